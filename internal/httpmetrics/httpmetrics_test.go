package httpmetrics

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A wrapped handler can flush (a streamed snapshot reaches the client as it
// is written) and move its write deadline, and its requests are counted by
// route and code.
func TestWrapStreamsAndCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream/{id}", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetWriteDeadline: %v", err)
		}
		_, _ = w.Write([]byte("first\n"))
		if err := rc.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		<-release // the first line must be at the client by now
		_, _ = w.Write([]byte("second\n"))
	})
	h, err := Wrap(mux, reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/stream/7")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if line, err := rd.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("the first line did not stream: %q %v", line, err)
	}
	close(release)
	if line, _ := rd.ReadString('\n'); line != "second\n" {
		t.Fatalf("then %q", line)
	}
	resp.Body.Close()
	if _, err := http.Get(srv.URL + "/nowhere"); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP jutong_http_requests_total HTTP requests served, by server, route pattern and status code.
# TYPE jutong_http_requests_total counter
jutong_http_requests_total{code="200",route="GET /stream/{id}",server="test"} 1
jutong_http_requests_total{code="404",route="other",server="test"} 1
`
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := testutil.GatherAndCompare(reg, strings.NewReader(want), "jutong_http_requests_total")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
}
