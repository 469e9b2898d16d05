package bench

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/jutong/jutong/internal/app/bus"
)

// stageProfile is a CPU profile of this process taken to say what each
// stage of the bus costs: the bus labels its stages' goroutines
// (bus.StageLabel: door, sink.<name>, copy.<topic>) and the bench its
// publishers'; the samples are summed by label. What carries no label is
// the runtime's own work (the garbage collector's background marking, the
// scheduler) and the rest of the bus (registry, control plane, API).
type stageProfile struct {
	buf  bytes.Buffer
	file string // also written here when set (--cpuprofile)
}

func startStageProfile(file string) (*stageProfile, error) {
	sp := &stageProfile{file: file}
	if err := pprof.StartCPUProfile(&sp.buf); err != nil {
		return nil, err
	}
	return sp, nil
}

// stop ends the profile and returns the CPU time by stage ("" for none).
func (sp *stageProfile) stop() (map[string]time.Duration, error) {
	pprof.StopCPUProfile()
	if sp.file != "" {
		if err := os.WriteFile(sp.file, sp.buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
	}
	p, err := profile.Parse(bytes.NewReader(sp.buf.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("the stages' CPU profile: %w", err)
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("the stages' CPU profile has no cpu/nanoseconds samples")
	}
	out := map[string]time.Duration{}
	for _, s := range p.Sample {
		stage := ""
		if l := s.Label[bus.StageLabel]; len(l) > 0 {
			stage = l[0]
		}
		out[stage] += time.Duration(s.Value[idx])
	}
	return out, nil
}

// printStageCPU prints CPU-s per 100,000 events by stage, the copies
// together.
func printStageCPU(w io.Writer, cpu map[string]time.Duration, events int) {
	merged := map[string]time.Duration{}
	for st, d := range cpu {
		switch {
		case st == "":
			st = "unlabelled (garbage collector, runtime, registry, control)"
		case strings.HasPrefix(st, "copy."):
			st = "copies (audit, quarantine, disputes)"
		}
		merged[st] += d
	}
	var parts []string
	for _, st := range slices.Sorted(maps.Keys(merged)) {
		parts = append(parts, fmt.Sprintf("%s %.2f", st, merged[st].Seconds()*100_000/float64(events)))
	}
	fmt.Fprintf(w, "  CPU-s per 100,000 events by stage (CPU profile of this process): %s\n", strings.Join(parts, ", "))
}
