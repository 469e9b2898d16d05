package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/app/apply"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/server/duplicates"
)

const catalogDesc = `Works with the catalog: the departments, items, base and theme databases that
drive the bus. The catalog is the sample shipped in the binary, or the directory
given by --catalog (catalog.json, items/*.json, themes/*.json).

Subcommands:
  list                 a table of the items (--json for scripts)
  show CODE            one item with its fields (--json for scripts)
  check                validate the catalog and generate every schema; with --registry,
                       also check each schema against the registered versions (what a
                       catalog change's CI runs)
  apply                create or update one topic per item (partitions, retention, cleanup
                       policy) and register the schemas; a second run changes nothing
  duplicates           fields two items both collect about the same citizen or enterprise
                       (重复采集), ranked: the catalog's evidence (name, title, type), and with
                       --postgres-dsn (JUTONG_PG_URL in jutong.env) the base databases' (how many
                       subjects both hold, how often the values agree)
  history ITEM         every version of an item (jutong proposal history: the bus's API)
  diff ITEM FROM TO    what changed between two versions (jutong proposal diff)
  negative             the negative list (负面清单): each item not shared or not opened, with
                       its legal basis (--json for scripts)
  lists                the lists shared with neighbouring regions (lists/*.json): what each
                       offers and receives, approved by whom; with --partner DIR (the
                       partner's catalog), whether the two sides agree (docs/federation.md)`

func runCatalog(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(errOut, "Usage: jutong catalog <list|show|check|apply|lists|negative|duplicates> [flags]\n\n%s\n", catalogDesc)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("a subcommand is required")
	}
	sub, args := args[0], args[1:]
	if sub == "history" || sub == "diff" { // the versions the bus keeps: through its API
		return runProposal(ctx, append([]string{sub}, args...), out, errOut)
	}
	fs := cmdflag.New("catalog "+sub, catalogDesc, errOut)
	dir := fs.EnvString("catalog", "JUTONG_CATALOG", "", "catalog directory; empty: the sample built into jutong")
	asJSON := fs.Bool("json", false, "print JSON instead of a table (list, show)")
	var conn cmdflag.Conn
	conn.Register(fs, cmdflag.ConnDefaults{Brokers: "127.0.0.1:9092", User: "jutong",
		UserIs: "the bus's admin (apply; check asks the registry, optional there, as it)"})
	regURL, brokers, user, pass, ca := &conn.Registry, &conn.Brokers, &conn.User, &conn.Password, &conn.CA
	dryRun := fs.Bool("dry-run", false, "apply: print the changes without making them")
	partner := fs.String("partner", "", "lists: the partner region's catalog directory, to compare the two sides")
	pgDSN := fs.EnvString("postgres-dsn", "JUTONG_PG_URL", "", "duplicates: the base databases' PostgreSQL (the bus's database), to measure the overlap")
	most := fs.Int("most", 30, "duplicates: how many to print")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cat, err := stack.LoadCatalog(*dir)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return catalogList(cat, *asJSON, out)
	case "show":
		if fs.NArg() != 1 {
			return errors.New("usage: jutong catalog show CODE")
		}
		return catalogShow(cat, fs.Arg(0), *asJSON, out)
	case "check":
		k := kafkaconn.Config{User: *user, Password: *pass, CAFile: *ca}
		return catalogCheck(ctx, cat, k, *regURL, out)
	case "apply":
		if *regURL == "" {
			*regURL = "https://127.0.0.1:8081"
		}
		k := kafkaconn.Config{Brokers: kafkaconn.ParseBrokers(*brokers), User: *user, Password: *pass, CAFile: *ca}
		return catalogApply(ctx, cat, k, *regURL, *dryRun, out)
	case "lists":
		return catalogLists(cat, *partner, *asJSON, out)
	case "duplicates":
		return catalogDuplicates(ctx, cat, *pgDSN, *most, *asJSON, out)
	case "negative":
		neg := cat.NegativeList()
		if *asJSON {
			return printJSON(out, neg)
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ITEM\tSOURCE\tNOT\tLEGAL BASIS\tNAME")
		for _, n := range neg {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Item, n.Source, n.Withheld, n.LegalBasis, n.Name)
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown subcommand %q (list, show, check, apply, lists, negative, duplicates)", sub)
}

// catalogLists prints the shared lists and, with a partner's catalog,
// where the two sides disagree (an error when they do).
func catalogLists(cat *catalog.Catalog, partnerDir string, asJSON bool, out io.Writer) error {
	if asJSON {
		lists := cat.Lists
		if lists == nil {
			lists = []*catalog.SharedList{}
		}
		return json.NewEncoder(out).Encode(lists)
	}
	if len(cat.Lists) == 0 {
		fmt.Fprintln(out, "no shared lists (lists/*.json)")
	}
	for _, l := range cat.Lists {
		fmt.Fprintf(out, "%s  %s  with %s (as %s here), agreement: %s; approved by %s on %s\n", l.Code, l.Name, l.Partner, l.Department, l.Agreement, l.Approved.By, l.Approved.On)
		for _, code := range l.Offers {
			fmt.Fprintf(out, "  offers    %s\n", code)
		}
		for _, code := range l.Receives {
			fmt.Fprintf(out, "  receives  %s (its %s)\n", code, cat.Item(code).Upstream.Item)
		}
	}
	if partnerDir == "" {
		return nil
	}
	p, err := catalog.Load(os.DirFS(partnerDir))
	if err != nil {
		return fmt.Errorf("--partner: %w", err)
	}
	diffs := catalog.CompareLists(cat, p)
	for _, d := range diffs {
		fmt.Fprintln(out, "DISAGREE", d)
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%d disagreement(s) with %s", len(diffs), p.BusName())
	}
	fmt.Fprintf(out, "%s and %s agree on their shared lists\n", cat.BusName(), p.BusName())
	return nil
}

// itemView is an item as list and show print it.
type itemView struct {
	*catalog.Item
	Topic   catalog.TopicConfig `json:"topic"`
	Subject string              `json:"subject"`
	Themes  []string            `json:"themes"`
}

func view(cat *catalog.Catalog, it *catalog.Item) itemView {
	return itemView{Item: it, Topic: cat.TopicConfig(it), Subject: it.Subject(), Themes: nonNilStrings(it.Themes())}
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func catalogList(cat *catalog.Catalog, asJSON bool, out io.Writer) error {
	if asJSON {
		items := make([]itemView, len(cat.Items))
		for i, it := range cat.Items {
			items[i] = view(cat, it)
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"departments": cat.Departments, "bases": cat.Bases, "themes": cat.Themes, "items": items})
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	// Chinese names go last: tabwriter counts runes, not display width.
	fmt.Fprintln(tw, "CODE\tSOURCE\tBASE\tKEY\tSHARE\tOPEN\tFREQUENCY\tFIELDS\tMAX GRADE\tTHEMES\tNAME")
	for _, it := range cat.Items {
		maxGrade := 0
		for _, f := range it.Fields {
			maxGrade = max(maxGrade, f.Grade)
		}
		base := it.Base
		if base == "" {
			base = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", it.Code, it.Source, base, it.Key,
			it.Share, it.Open, it.UpdateFrequency, len(it.Fields), maxGrade, or(strings.Join(it.Themes(), ","), "-"), it.Name)
	}
	fmt.Fprintf(tw, "\n%d items, %d departments, %d base databases, %d theme databases\n", len(cat.Items), len(cat.Departments), len(cat.Bases), len(cat.Themes))
	return tw.Flush()
}

func catalogShow(cat *catalog.Catalog, code string, asJSON bool, out io.Writer) error {
	it := cat.Item(code)
	if it == nil {
		var codes []string
		for _, x := range cat.Items {
			if strings.Contains(x.Code, code) {
				codes = append(codes, x.Code)
			}
		}
		sort.Strings(codes)
		hint := ""
		if len(codes) > 0 {
			hint = " (did you mean " + strings.Join(codes, ", ") + "?)"
		}
		return fmt.Errorf("no catalog item %q%s", code, hint)
	}
	v := view(cat, it)
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	src := cat.Department(it.Source)
	fmt.Fprintf(out, "%s  %s (%s)\n", it.Code, it.Name, it.NameEN)
	fmt.Fprintf(out, "  source       %s %s (principal %s)\n", src.Code, src.Name, src.Principal)
	fmt.Fprintf(out, "  base         %s\n  key          %s\n  share        %s\n  open         %s\n", or(it.Base, "-"), it.Key, it.Share, it.Open)
	if it.LegalBasis != "" {
		fmt.Fprintf(out, "  legal basis  %s\n", it.LegalBasis)
	}
	fmt.Fprintf(out, "  frequency    %s\n  topic        %s (partitions %d, replication %d, retention.ms %d, cleanup %s)\n  subject      %s\n  themes       %s\n\n",
		it.UpdateFrequency, it.Topic(), v.Topic.Partitions, v.Topic.ReplicationFactor, v.Topic.RetentionMs, v.Topic.CleanupPolicy, v.Subject, or(strings.Join(v.Themes, ", "), "-"))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FIELD\tTYPE\tREQUIRED\tGRADE\tRULES\tTITLE")
	for _, f := range it.Fields {
		typ := string(f.Type)
		switch f.Type {
		case catalog.TypeDecimal:
			typ = fmt.Sprintf("decimal(%d,%d)", f.Precision, f.Scale)
		case catalog.TypeEnum:
			typ = "enum(" + strings.Join(f.Symbols, "|") + ")"
		}
		rules := strings.Join(f.Rules, ",")
		if f.Min != nil {
			rules += fmt.Sprintf(" min=%v", *f.Min)
		}
		if f.Max != nil {
			rules += fmt.Sprintf(" max=%v", *f.Max)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%v\t%d\t%s\t%s\n", f.Name, typ, f.Required, f.Grade, or(strings.TrimSpace(rules), "-"), f.Title)
	}
	return tw.Flush()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// catalogCheck validates (done by loading) and checks every schema.
func catalogCheck(ctx context.Context, cat *catalog.Catalog, k kafkaconn.Config, regURL string, out io.Writer) error {
	var rc *sr.Client
	if regURL != "" {
		var err error
		if rc, err = sr.NewClient(k.RegistryOpts(regURL)...); err != nil {
			return err
		}
	}
	problems, err := apply.Check(ctx, cat, rc)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return errors.New("catalog check failed:\n  " + strings.Join(problems, "\n  "))
	}
	what := "schemas generated"
	if rc != nil {
		what = "schemas compatible with " + regURL
	}
	fmt.Fprintf(out, "catalog ok: %d departments, %d items, %d theme databases; %s\n", len(cat.Departments), len(cat.Items), len(cat.Themes), what)
	return nil
}

// catalogApply brings topics and registered schemas in line with the catalog.
func catalogApply(ctx context.Context, cat *catalog.Catalog, k kafkaconn.Config, regURL string, dryRun bool, out io.Writer) error {
	kopts, err := k.Opts()
	if err != nil {
		return err
	}
	rc, err := sr.NewClient(k.RegistryOpts(regURL)...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	plan, err := apply.NewPlan(ctx, cat, kopts, rc, bus.InternalTopics(cat)...)
	if err != nil {
		return err
	}
	defer plan.Close()
	if plan.Empty() {
		fmt.Fprintf(out, "no change: %d topics and %d schemas match the catalog\n", len(cat.Items), len(cat.Items))
		return nil
	}
	for _, c := range plan.Topics {
		fmt.Fprintln(out, c)
	}
	for _, r := range plan.Schemas {
		fmt.Fprintf(out, "%-16s %s\n", "register schema", r.Subject)
	}
	if dryRun {
		fmt.Fprintln(out, "(dry run: nothing changed)")
		return nil
	}
	if err := plan.Apply(ctx, func(subject string, id int) {
		fmt.Fprintf(out, "%-16s %s  id %d\n", "registered", subject, id)
	}); err != nil {
		return err
	}
	fmt.Fprintf(out, "applied %d topic changes and %d schema registrations", len(plan.Topics)-plan.Cannot(), len(plan.Schemas))
	if n := plan.Cannot(); n > 0 {
		fmt.Fprintf(out, "; %d differences need an operator (see 'cannot' above)", n)
	}
	fmt.Fprintln(out)
	return nil
}

// catalogDuplicates prints the duplicate-collection candidates, measured
// against the base databases when a DSN is given.
func catalogDuplicates(ctx context.Context, cat *catalog.Catalog, dsn string, most int, asJSON bool, out io.Writer) error {
	cs := duplicates.Candidates(cat)
	if dsn != "" {
		db, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := duplicates.Measure(ctx, db, cat, cs); err != nil {
			return err
		}
	}
	if len(cs) > most {
		cs = cs[:most]
	}
	if asJSON {
		return printJSON(out, cs)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tSCORE\tDATA\tA\tB\tEVIDENCE")
	for i, c := range cs {
		data := "-"
		if c.Data != nil {
			data = fmt.Sprintf("%d of %d agree", c.Data.Equal, c.Data.Subjects)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s.%s (%s)\t%s.%s (%s)\t%s\n", i+1, c.Score, data, c.A.Item, c.A.Field, c.A.Source, c.B.Item, c.B.Field, c.B.Source, strings.Join(c.Evidence, "; "))
	}
	return tw.Flush()
}
