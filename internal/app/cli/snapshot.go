package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/tlsca"
	"github.com/jutong/jutong/server/access"
)

const snapshotDesc = `Takes the current state of a catalog item as the department's grant sees it (masked
to the grant, with each record's provenance) and writes it to stdout as NDJSON: first
a line saying where the state stops (per partition of the item's topic, the offset
of the first change it does not hold) and which topic the grant follows, then one
line per record, then {"end":true,"records":N}. Follow the topic from those
positions and no change is missed or applied twice. Authenticates as the
department's principal (HTTP basic auth with its Kafka password); needs an active
grant for the purpose stated. Audited.`

// runSnapshot: jutong snapshot.
func runSnapshot(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("snapshot", snapshotDesc, errOut)
	item := fs.String("item", "", "the catalog item (required)")
	purpose := fs.String("purpose", "", "the purpose the grant was approved for (required)")
	dept := fs.EnvString("department", "JUTONG_DEPARTMENT", "", "the department (required)")
	api := fs.EnvString("api", "JUTONG_API_URL", "https://127.0.0.1:8080", "the bus's HTTP API")
	creds := fs.EnvString("credentials", "JUTONG_CREDENTIALS", filepath.Join(".jutong", "credentials.json"), "the departments' SCRAM passwords, as jutong dev writes them")
	ca := fs.EnvString("ca", "JUTONG_CA_FILE", "", "CA certificate to trust for an https API")
	catDir := fs.EnvString("catalog", "JUTONG_CATALOG", "", "catalog directory; empty: the sample built into jutong")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *item == "" || *purpose == "" || *dept == "" {
		return errors.New("--item, --purpose and --department are required")
	}
	cat, err := stack.LoadCatalog(*catDir)
	if err != nil {
		return err
	}
	d := cat.Department(*dept)
	if d == nil {
		return fmt.Errorf("no department %q", *dept)
	}
	pw, err := access.ReadCredentials(*creds)
	if err != nil {
		return err
	}
	hc := &http.Client{}
	if *ca != "" {
		tc, err := tlsca.Client(*ca)
		if err != nil {
			return err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		hc.Transport = tr
	}
	req, err := http.NewRequestWithContext(ctx, "GET", *api+"/v1/items/"+url.PathEscape(*item)+"/snapshot?"+url.Values{"purpose": {*purpose}}.Encode(), nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(d.Principal, pw[d.Principal])
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	w := bufio.NewWriterSize(out, 1<<16)
	defer w.Flush()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var last []byte
	for sc.Scan() {
		last = append(last[:0], sc.Bytes()...)
		w.Write(last)
		w.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return err
	}
	var end struct {
		End     bool   `json:"end"`
		Records int    `json:"records"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(last, &end) != nil || !end.End {
		return fmt.Errorf("the snapshot is incomplete: %s", end.Error)
	}
	fmt.Fprintf(errOut, "snapshot of %s: %d records in %s\n", *item, end.Records, time.Since(start).Round(time.Millisecond))
	return nil
}
