package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/server/access"
)

// devTarget is a running `jutong dev` as an attacker finds it: its
// addresses, and the secrets each legitimate party holds.
type devTarget struct {
	dir, registry, api string
	brokers            []string
	env                map[string]string
	creds              access.Credentials
	tokens, officers   map[string]string
	tc                 *tls.Config
	hc                 *http.Client
}

// TestAttacksOnDev replays, against `jutong dev` in a process of its own
// (with its own local PostgreSQL and ClickHouse), each attack the security
// review found, and asserts each is refused: registry writes without and
// with a department's credentials, files others could read (by stat and as
// another user), the salted-password login (the SASL state readable by
// another local user), database logins without the password, weak
// defaults to serve, a publishing token used as an officer's, a department
// deciding its own application, a slow body, and plaintext where TLS is due.
func TestAttacksOnDev(t *testing.T) {
	d := startTarget(t)
	t.Run("registry", d.registry403)
	t.Run("files", func(t *testing.T) { d.files(t) })
	t.Run("another local user", d.otherUser)
	t.Run("databases without their password", d.databases)
	t.Run("serve with weak defaults", serveDefaults)
	t.Run("roles", d.roles)
	t.Run("slow bodies", d.slowBodies)
	t.Run("tls", d.tlsOnly)
}

func startTarget(t *testing.T) *devTarget {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "checkout", ".jutong")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "postgres", "LOCATION")); err == nil {
			os.RemoveAll(strings.SplitN(string(b), "\n", 2)[0])
		}
	})
	args := []string{"--apply", "--data-dir", dir, "--kafka-ports", freePorts(t, 3), "--registry-addr", "127.0.0.1:0",
		"--api-addr", "127.0.0.1:0", "--http-read-timeout", "3s"}
	addrs, _, stop := startDevProcess(t, args)
	d := &devTarget{dir: dir, registry: addrs["Schema registry"], brokers: kafkaconn.ParseBrokers(addrs["Kafka brokers"]),
		api: strings.TrimSuffix(addrs["HTTP gateway"], "/v1/items/{code}/events")}
	t.Cleanup(func() {
		stop()
		// What the cluster writes on its way out (its SASL state, the
		// partitions' last segments) is private too.
		d.files(t)
	})
	d.env = readEnv(t, filepath.Join(dir, "jutong.env"))
	var err error
	if d.creds, err = access.ReadCredentials(filepath.Join(dir, "credentials.json")); err != nil {
		t.Fatal(err)
	}
	if d.tokens, err = access.ReadCredentials(filepath.Join(dir, "tokens.json")); err != nil {
		t.Fatal(err)
	}
	if d.officers, err = access.ReadCredentials(filepath.Join(dir, "officers.json")); err != nil {
		t.Fatal(err)
	}
	d.tc, d.hc = devTLS(t, dir)
	return d
}

// do sends a request with basic auth (user "" for none) and returns the status.
func (d *devTarget) do(t *testing.T, method, url, user, pass, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// registry403: nobody reads without credentials; a department reads, and
// can neither register (squat), delete (soft, permanent) nor loosen the
// compatibility; its wrong password gets nothing.
func (d *devTarget) registry403(t *testing.T) {
	const subject = "legal_person.enterprise_registration-value"
	dept, pw := "dept.tax", d.creds["dept.tax"]
	schema := `{"schema":"{\"type\":\"record\",\"name\":\"Squat\",\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]}"}`
	for _, c := range []struct {
		method, path, user, pass, body string
		want                           int
	}{
		{"GET", "/subjects", "", "", "", 401},
		{"PUT", "/config", "", "", `{"compatibility":"NONE"}`, 401},
		{"DELETE", "/subjects/" + subject, "", "", "", 401},
		{"POST", "/subjects/population.squat-value/versions", "", "", schema, 401},
		{"GET", "/subjects", dept, "wrong", "", 401},
		{"GET", "/subjects", dept, pw, "", 200},
		{"PUT", "/config", dept, pw, `{"compatibility":"NONE"}`, 403},
		{"PUT", "/config/" + subject, dept, pw, `{"compatibility":"NONE"}`, 403},
		{"DELETE", "/subjects/" + subject, dept, pw, "", 403},
		{"DELETE", "/subjects/" + subject + "?permanent=true", dept, pw, "", 403},
		{"DELETE", "/subjects/" + subject + "/versions/1", dept, pw, "", 403},
		{"POST", "/subjects/population.squat-value/versions", dept, pw, schema, 403},
		{"POST", "/subjects/" + subject + "/versions", dept, pw, schema, 403},
	} {
		if got := d.do(t, c.method, d.registry+c.path, c.user, c.pass, c.body); got != c.want {
			t.Errorf("%s %s as %q: %d, want %d", c.method, c.path, c.user, got, c.want)
		}
	}
	// franz-go's sr client, as a department would configure it.
	rc, err := sr.NewClient(sr.URLs(d.registry), sr.BasicAuth(dept, pw), sr.DialTLSConfig(d.tc))
	if err != nil {
		t.Fatal(err)
	}
	var re *sr.ResponseError
	if _, err := rc.CreateSchema(context.Background(), "population.squat2-value", sr.Schema{Schema: `"string"`}); !errors.As(err, &re) || re.StatusCode != 403 {
		t.Errorf("sr client registered as a department: %v", err)
	}
	if subs, err := rc.Subjects(context.Background()); err != nil || len(subs) == 0 {
		t.Errorf("a department cannot read: %v %v", subs, err)
	}
}

// files: everything under the data directory is its owner's alone, the
// places that hold secrets and personal data first.
func (d *devTarget) files(t *testing.T) {
	t.Helper()
	privateFiles(t, d.dir)
	for _, name := range []string{"credentials.json", "tokens.json", "officers.json", "admin.json", "jutong.env", "pgpass",
		"clickhouse-client.xml", "tls/ca-key.pem", "tls/server-key.pem", "kafka", "kafka/partitions", "clickhouse/users.xml",
		"clickhouse/jutong-password"} {
		st, err := os.Stat(filepath.Join(d.dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v", name, st.Mode().Perm())
		}
	}
	if st, err := os.Stat(d.dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("the data directory is %v (%v)", st.Mode().Perm(), err)
	}
}

// otherUser: a local user other than the bus's owner cannot read the SASL
// state (the salted passwords a SCRAM login needs), the credentials, the
// keys or the partitions, nor list the data directory.
func (d *devTarget) otherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	targets := []string{d.dir, "credentials.json", "admin.json", "kafka/sasl.json", "kafka/acls.json", "tls/server-key.pem", "jutong.env"}
	// A partition file with citizen ids in it, whatever its name.
	_ = filepath.Walk(filepath.Join(d.dir, "kafka", "partitions"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.Contains(p, "population.") && len(targets) < 8 {
			targets = append(targets, p)
		}
		return nil
	})
	for _, f := range targets {
		if !filepath.IsAbs(f) {
			f = filepath.Join(d.dir, f)
		}
		cmd := exec.Command("cat", f)
		if f == d.dir {
			cmd = exec.Command("ls", f)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Errorf("user nobody read %s: %v %.80q", f, err, out)
		}
	}
}

// databases: the local PostgreSQL and ClickHouse let nobody in without
// their password (TCP, and PostgreSQL's socket).
func (d *devTarget) databases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pgURL, _ := url.Parse(d.env["JUTONG_PG_URL"])
	chURL, _ := url.Parse(d.env["JUTONG_CH_URL"])
	if pgURL == nil || chURL == nil || pgURL.Host == "" || chURL.Host == "" {
		t.Fatalf("jutong.env lacks the databases: %v", d.env)
	}
	sockDir := filepath.Join(d.dir, "postgres")
	if b, err := os.ReadFile(filepath.Join(sockDir, "LOCATION")); err == nil {
		sockDir = strings.SplitN(string(b), "\n", 2)[0]
	}
	for what, dsn := range map[string]string{
		"TCP, no password":    "postgres://postgres@" + pgURL.Host + "/postgres?sslmode=disable",
		"TCP, wrong password": "postgres://postgres:postgres@" + pgURL.Host + "/postgres?sslmode=disable",
		"socket, no password": fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable", sockDir, pgURL.Port()),
	} {
		if conn, err := pgx.Connect(ctx, dsn); err == nil || !strings.Contains(err.Error(), "password") {
			if conn != nil {
				conn.Close(ctx)
			}
			t.Errorf("PostgreSQL let a login in (%s): %v", what, err)
		}
	}
	for _, dsn := range []string{"clickhouse://" + chURL.Host + "/default", "clickhouse://default:default@" + chURL.Host + "/default"} {
		opts, _ := clickhouse.ParseDSN(dsn)
		conn, err := clickhouse.Open(opts)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close()
		}
		if err == nil {
			t.Errorf("ClickHouse let %s in", dsn)
		}
	}
}

// serveDefaults: serve refuses a known default, an empty or a short
// password, and plaintext, unless told it is a lab.
func serveDefaults(t *testing.T) {
	for _, args := range [][]string{
		{"--kafka-user", "jutong", "--kafka-password", "jutong-dev", "--tls-cert", "c", "--tls-key", "k", "--ca", "a"},
		{"--kafka-user", "jutong", "--kafka-password", "change-me", "--tls-cert", "c", "--tls-key", "k", "--ca", "a"},
		{"--kafka-user", "jutong", "--kafka-password", "", "--tls-cert", "c", "--tls-key", "k", "--ca", "a"},
		{"--kafka-user", "jutong", "--kafka-password", "a-long-enough-secret-of-ours"}, // no TLS
	} {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), append([]string{"serve", "--brokers", "127.0.0.1:1"}, args...), &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), "refusing to start") {
			t.Errorf("serve %v: exit %d, %s", args, code, errOut.String())
		}
	}
}

// roles: a publishing token is not an officer's (and the other way
// round), and no department decides its own application.
func (d *devTarget) roles(t *testing.T) {
	call := func(method, path, token string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, d.api+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := d.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	// The authority's publishing token cannot approve anything; its officer's can.
	code, app := call("POST", "/v1/applications", d.officers["health"], map[string]any{"item": "population.resident_registration", "purpose": "疫苗接种覆盖率统计"})
	if code != 201 {
		t.Fatalf("health's officer applies: %d %v", code, app)
	}
	id, _ := app["id"].(string)
	if code, _ := call("POST", "/v1/applications", d.tokens["health"], map[string]any{"item": "population.resident_registration", "purpose": "x"}); code != 401 {
		t.Errorf("a publishing token applied: %d", code)
	}
	if code, _ := call("POST", "/v1/applications/"+id+"/approve", d.tokens["big_data"], map[string]any{}); code != 401 {
		t.Errorf("the authority's publishing token approved: %d", code)
	}
	if code, _ := call("POST", "/v1/applications/"+id+"/approve", d.officers["health"], map[string]any{}); code != 403 {
		t.Errorf("health approved its own application: %d", code)
	}
	// The authority applies for itself: its own review is not its to make.
	code, own := call("POST", "/v1/applications", d.officers["big_data"], map[string]any{"item": "population.resident_registration", "purpose": "人口统计"})
	if code != 201 || own["state"] != "source_review" {
		t.Fatalf("the authority's own application: %d %v", code, own)
	}
	if code, _ := call("POST", "/v1/applications/"+own["id"].(string)+"/approve", d.officers["big_data"], map[string]any{}); code != 403 {
		t.Errorf("the authority approved its own application: %d", code)
	}
	if code, _ := call("POST", "/v1/applications/"+id+"/approve", d.officers["big_data"], map[string]any{"reason": "用途正当"}); code != 200 {
		t.Errorf("the authority's officer approves another's: %d", code)
	}
	// An officer's token does not publish.
	line := `{"op":"UPSERT","key":"x","data":{}}` + "\n"
	req, _ := http.NewRequest("POST", d.api+"/v1/items/legal_person.enterprise_registration/events", strings.NewReader(line))
	req.Header.Set("Authorization", "Bearer "+d.officers["market_supervision"])
	resp, err := d.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("an officer's token published: %d", resp.StatusCode)
	}
}

// slowBodies: a request whose body trickles in is cut off after the read
// timeout (3s here), even with a valid token; the registry answers an
// anonymous one at once, without waiting for its body.
func (d *devTarget) slowBodies(t *testing.T) {
	slow := func(base, path, auth string) (time.Duration, string) {
		t.Helper()
		u, _ := url.Parse(base)
		conn, err := tls.Dial("tcp", u.Host, d.tc)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n%s\r\n{", path, u.Host, auth)
		// One byte a second, for at most 30 seconds.
		got := make(chan string, 1)
		go func() {
			line, _ := bufio.NewReader(conn).ReadString('\n')
			got <- line
		}()
		for range 30 {
			select {
			case line := <-got:
				return time.Since(start), line
			case <-time.After(time.Second):
				if _, err := conn.Write([]byte(" ")); err != nil {
					return time.Since(start), "closed"
				}
			}
		}
		return time.Since(start), "still open"
	}
	took, line := slow(d.api, "/v1/items/legal_person.enterprise_registration/events", "Authorization: Bearer "+d.tokens["market_supervision"]+"\r\n")
	if took > 10*time.Second || line == "still open" {
		t.Errorf("a slow body with a valid token was held %s (%q)", took, line)
	}
	took, line = slow(d.registry, "/subjects/population.x-value/versions", "")
	if took > 2*time.Second || !strings.Contains(line, "401") {
		t.Errorf("the registry held an anonymous slow body %s: %q", took, line)
	}
}

// tlsOnly: Kafka and the HTTP APIs speak TLS only; a client that does not
// trust the bus's CA is refused; kcat over SASL_SSL with the CA works.
func (d *devTarget) tlsOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := "dept.market_supervision"
	plain, err := kafkaconn.Config{Brokers: d.brokers, User: p, Password: d.creds[p]}.Client(kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	if err := plain.Ping(pctx); err == nil {
		t.Error("the cluster answered a plaintext client")
	}
	pcancel()
	plain.Close()
	if resp, err := http.Get(strings.Replace(d.api, "https://", "http://", 1) + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("the API answered plain HTTP: %.100s", body)
		}
	}
	if _, err := http.Get(d.api + "/metrics"); err == nil {
		t.Error("a client that does not trust the bus's CA was answered")
	}
	withCA, err := kafkaconn.Config{Brokers: d.brokers, User: p, Password: d.creds[p], CAFile: filepath.Join(d.dir, "tls", "ca.pem")}.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer withCA.Close()
	if err := withCA.Ping(ctx); err != nil {
		t.Errorf("SASL_SSL with the CA: %v", err)
	}
	if _, err := exec.LookPath("kcat"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat is not installed (scripts/deps.sh installs it)")
		}
		t.Skip("no kcat")
	}
	base := []string{"-b", strings.Join(d.brokers, ","), "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-256",
		"-X", "sasl.username=" + p, "-X", "sasl.password=" + d.creds[p]}
	out, err := exec.CommandContext(ctx, "kcat", append(base, "-X", "ssl.ca.location="+filepath.Join(d.dir, "tls", "ca.pem"), "-m", "20", "-L")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "_jutong.inbox.market_supervision") {
		t.Errorf("kcat over SASL_SSL with the CA: %v %s", err, out)
	}
	// Without the CA, librdkafka refuses the certificate.
	out, err = exec.CommandContext(ctx, "kcat", append(base, "-X", "ssl.ca.location=/etc/ssl/certs/ca-certificates.crt", "-m", "3", "-L")...).CombinedOutput()
	if err == nil {
		t.Errorf("kcat trusted the bus without its CA: %s", out)
	}
	// Without TLS at all, nothing.
	out, err = exec.CommandContext(ctx, "kcat", "-b", strings.Join(d.brokers, ","), "-X", "security.protocol=SASL_PLAINTEXT",
		"-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username="+p, "-X", "sasl.password="+d.creds[p], "-m", "3", "-L").CombinedOutput()
	if err == nil {
		t.Errorf("kcat over plaintext was answered: %s", out)
	}
}
