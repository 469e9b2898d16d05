package bench

import (
	"os"
	"runtime/pprof"
	"sync"
)

// cpuProfile writes a CPU profile of what runs until the returned stop is
// called to path; no path, no profile.
func cpuProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return sync.OnceFunc(func() { pprof.StopCPUProfile(); f.Close() }), nil
}
