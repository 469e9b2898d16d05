package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/jutong/jutong/internal/app/grants"
	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/httpapi"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/tlsca"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/server/access"
	"github.com/jutong/jutong/server/control"
)

const controlDesc = `Talks to the control API of a running bus (jutong dev, demo or serve) as a department's
officer, authenticated by the officer's bearer token (not the publishing token).`

// controlFlags are what every control command takes.
type controlFlags struct {
	api, dept, token, tokens, catalogDir, ca string
	asJSON                                   bool
}

func (c *controlFlags) register(fs *cmdflag.FlagSet) {
	fs.EnvStringVar(&c.api, "api", "JUTONG_API_URL", "https://127.0.0.1:8080", "the bus's HTTP API")
	fs.EnvStringVar(&c.dept, "department", "JUTONG_DEPARTMENT", "", "the acting department's code")
	fs.EnvStringVar(&c.token, "token", "JUTONG_OFFICER_TOKEN", "", "its officer's bearer token; default: from --officers")
	fs.EnvStringVar(&c.tokens, "officers", "JUTONG_OFFICERS", filepath.Join(".jutong", "officers.json"), "the departments' officer tokens, as jutong dev writes them")
	fs.EnvStringVar(&c.catalogDir, "catalog", "JUTONG_CATALOG", "", "catalog directory; empty: the sample built into jutong")
	fs.EnvStringVar(&c.ca, "ca", "JUTONG_CA_FILE", "", "CA certificate to trust for an https API; jutong dev makes one in --data-dir/tls/ca.pem")
	fs.BoolVar(&c.asJSON, "json", false, "print JSON")
}

// client is the control API's client as the acting department.
func (c *controlFlags) client() (*control.Client, error) {
	hc, tok, err := c.officer()
	if err != nil {
		return nil, err
	}
	return control.NewClient(c.api, tok, hc), nil
}

// officer returns an HTTP client for the API (trusting --ca) and the
// acting department officer's token.
func (c *controlFlags) officer() (*http.Client, string, error) {
	tok := c.token
	if tok == "" {
		if c.dept == "" {
			return nil, "", errors.New("--department (or JUTONG_DEPARTMENT) is required")
		}
		toks, err := access.ReadCredentials(c.tokens) // the same JSON shape: code -> secret
		if err != nil {
			return nil, "", err
		}
		if tok = toks[c.dept]; tok == "" {
			return nil, "", fmt.Errorf("no token for %s in %s: pass --token", c.dept, c.tokens)
		}
	}
	hc := &http.Client{Timeout: time.Minute}
	if c.ca != "" {
		tc, err := tlsca.Client(c.ca)
		if err != nil {
			return nil, "", err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		hc.Transport = tr
	}
	return hc, tok, nil
}

// call makes an officer's call to the API and returns the answer's body;
// an error status becomes an error with the API's message.
func (c *controlFlags) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	hc, tok, err := c.officer()
	if err != nil {
		return nil, err
	}
	return httpapi.Call(ctx, hc, c.api, tok, method, path, body)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// zone is the catalog calendar's time zone, in which deadlines fall at the
// end of a working day (Asia/Shanghai unless the catalog says otherwise).
func (c *controlFlags) zone() *time.Location {
	if cat, err := stack.LoadCatalog(c.catalogDir); err == nil {
		if cal, err := control.NewCalendar(cat.Calendar); err == nil {
			return cal.Location()
		}
	}
	return time.Local
}

func printApplication(w io.Writer, a *control.Application, zone *time.Location) {
	fmt.Fprintf(w, "application %s: %s applies for %s\n  state     %s\n", a.ID, a.Department, a.Item, a.State)
	if !a.Due.IsZero() {
		over := ""
		if a.Overdue(time.Now()) {
			over = "  OVERDUE (escalated)"
		}
		fmt.Fprintf(w, "  due       %s%s\n", a.Due.In(zone).Format("2006-01-02 15:04 MST"), over)
	}
	fmt.Fprintf(w, "  purpose   %s\n  fields    %s\n  grade     %d\n  period    %s to %s\n", a.Purpose, strings.Join(a.Fields, ", "), a.Grade,
		a.From.Format(time.DateOnly), a.Until.Format(time.DateOnly))
	if a.Reason != "" {
		fmt.Fprintf(w, "  reason    %s\n", a.Reason)
	}
}

// runApply: jutong apply.
func runApply(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("apply", "Applies, as --department, to read a catalog item (the demand list).\n\n"+controlDesc, errOut)
	var c controlFlags
	c.register(fs)
	item := fs.String("item", "", "the catalog item (required)")
	purpose := fs.String("purpose", "", "what the data is for (required)")
	fields := fs.String("fields", "", "the fields needed, comma separated; default: all")
	grade := fs.Int("grade", 0, "the highest security grade needed in clear (1-4); default: that of the fields")
	until := fs.String("until", "", "the end of the period (YYYY-MM-DD); default: a year on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r := control.Request{Item: *item, Purpose: *purpose, Fields: splitList(*fields), Grade: *grade}
	if *until != "" {
		t, err := time.ParseInLocation(time.DateOnly, *until, time.Local)
		if err != nil {
			return fmt.Errorf("--until: %w", err)
		}
		r.Until = t
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	a, err := cl.Apply(ctx, r)
	if err != nil {
		return err
	}
	if c.asJSON {
		return printJSON(out, a)
	}
	printApplication(out, a, c.zone())
	return nil
}

// runDecide: jutong approve | refuse | revoke.
func runDecide(action string) func(ctx context.Context, args []string, out, errOut io.Writer) error {
	return func(ctx context.Context, args []string, out, errOut io.Writer) error {
		fs := cmdflag.New(action+" ID", fmt.Sprintf("%ss an application, as --department (the data authority first, then the item's source).\n\n%s", strings.ToUpper(action[:1])+action[1:], controlDesc), errOut)
		var c controlFlags
		c.register(fs)
		reason := fs.String("reason", "", "why (required to refuse or revoke)")
		grade := fs.Int("grade", 0, "approve: lower the grade")
		fields := fs.String("fields", "", "approve: approve only these of the requested fields")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return fmt.Errorf("usage: jutong %s ID [flags]", action)
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		decide := map[string]func(context.Context, string, control.Verdict) (*control.Application, error){
			"approve": cl.Approve, "refuse": cl.Refuse, "revoke": cl.Revoke}[action]
		a, err := decide(ctx, fs.Arg(0), control.Verdict{Reason: *reason, Grade: *grade, Fields: splitList(*fields)})
		if err != nil {
			return err
		}
		if c.asJSON {
			return printJSON(out, a)
		}
		printApplication(out, a, c.zone())
		return nil
	}
}

// runApplications: jutong applications.
func runApplications(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("applications", "Lists applications (the demand list) that --department may see: the data authority all.\n\n"+controlDesc, errOut)
	var c controlFlags
	c.register(fs)
	state := fs.String("state", "", "only this state: authority_review, source_review, granted, refused, revoked, expired")
	item := fs.String("item", "", "only this item")
	overdue := fs.Bool("overdue", false, "only reviews past their deadline (escalated)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	apps, err := cl.Applications(ctx, control.Filter{State: control.State(*state), Item: *item, Overdue: *overdue})
	if err != nil {
		return err
	}
	if c.asJSON {
		return printJSON(out, apps)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEPARTMENT\tITEM\tSTATE\tDUE\tNOTE")
	for _, a := range apps {
		due, note := "-", a.Reason
		if !a.Due.IsZero() {
			due = a.Due.In(c.zone()).Format("2006-01-02")
		}
		if a.Overdue(time.Now()) {
			note = "OVERDUE, escalated"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Department, a.Item, a.State, due, note)
	}
	return tw.Flush()
}

// runGrants: jutong grants.
func runGrants(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("grants", "Lists the active grants --department may see, and with --show what each delivers, field by field.\n\n"+controlDesc, errOut)
	var c controlFlags
	c.register(fs)
	show := fs.Bool("show", false, "print each grant's projection: fields in clear, masked and dropped")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	list, err := cl.Grants(ctx)
	if err != nil {
		return err
	}
	if c.asJSON {
		return printJSON(out, list)
	}
	cat, err := stack.LoadCatalog(c.catalogDir)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT\tDEPARTMENT\tITEM\tGRADE\tUNTIL\tREADS FROM")
	for _, g := range list {
		it := cat.Item(g.Item)
		if it == nil {
			continue
		}
		p := feed.Project(it, grants.FeedGrant(g))
		topic := grants.Topic(it, g)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", g.ID, g.Department, g.Item, g.Grade, g.Until.Format(time.DateOnly), topic)
		if *show {
			tw.Flush()
			fmt.Fprint(out, p.Describe())
		}
	}
	return tw.Flush()
}

// runResponsibilities: jutong responsibilities.
func runResponsibilities(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("responsibilities", "Prints the responsibility list: the items each department must publish, and how often.", errOut)
	catDir := fs.EnvString("catalog", "JUTONG_CATALOG", "", "catalog directory; empty: the sample built into jutong")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cat, err := stack.LoadCatalog(*catDir)
	if err != nil {
		return err
	}
	duties := control.Responsibilities(cat)
	if *asJSON {
		return printJSON(out, duties)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPARTMENT\tITEM\tFREQUENCY\tBASE\tNAME")
	for _, d := range duties {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Department, d.Item, d.Frequency, or(d.Base, "-"), d.Name)
	}
	return tw.Flush()
}

// runDept: jutong dept list | rotate.
func runDept(ctx context.Context, args []string, out, errOut io.Writer) error {
	const desc = `Departments as Kafka principals.

Subcommands:
  list          the departments, their principals and their consumer-group prefix
  rotate CODE   give a department's SCRAM user a new password, on the cluster and in
                the credentials file (the old one stops working at once)`
	if len(args) == 0 || (args[0] != "list" && args[0] != "rotate") {
		fmt.Fprintf(errOut, "Usage: jutong dept <list|rotate CODE> [flags]\n\n%s\n", desc)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("a subcommand is required: list or rotate")
	}
	fs := cmdflag.New("dept "+args[0], desc, errOut)
	catDir := fs.EnvString("catalog", "JUTONG_CATALOG", "", "catalog directory; empty: the sample built into jutong")
	var conn cmdflag.Conn
	conn.Register(fs, cmdflag.ConnDefaults{Brokers: "127.0.0.1:9092", User: "jutong", UserIs: "one allowed to alter SCRAM users (the bus's admin)"})
	brokers, user, pass, ca := &conn.Brokers, &conn.User, &conn.Password, &conn.CA
	creds := fs.EnvString("credentials", "JUTONG_CREDENTIALS", filepath.Join(".jutong", "credentials.json"), "the departments' SCRAM passwords")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cat, err := stack.LoadCatalog(*catDir)
	if err != nil {
		return err
	}
	if args[0] == "list" {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CODE\tPRINCIPAL\tGROUPS\tNAME")
		for _, d := range cat.Departments {
			role := ""
			if d.Code == cat.Authority {
				role = "  (the data authority)"
			}
			fmt.Fprintf(tw, "%s\tUser:%s\t%s*\t%s%s\n", d.Code, d.Principal, access.GroupPrefix(d.Code), d.Name, role)
		}
		return tw.Flush()
	}
	if fs.NArg() != 1 || cat.Department(fs.Arg(0)) == nil {
		return errors.New("usage: jutong dept rotate CODE (see jutong dept list)")
	}
	cl, err := kafkaconn.Config{Brokers: kafkaconn.ParseBrokers(*brokers), User: *user, Password: *pass, CAFile: *ca}.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	d := cat.Department(fs.Arg(0))
	if _, err := access.Rotate(ctx, kadm.NewClient(cl), *creds, d); err != nil {
		return err
	}
	fmt.Fprintf(out, "rotated the password of User:%s; the new one is in %s\n", d.Principal, *creds)
	return nil
}
