package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/server/bridge"
)

const bridgeDesc = `Carries the items another bus granted this one into this bus, exactly once
(docs/federation.md). The bridge is a client of both buses: on the upstream bus it
is this bus's department there (--upstream-department; it reads that department's
grants, masked as they are), on this bus the upstream bus's department here
(--department, a department with "bus" in catalog.json), publishing the received
items (those with "upstream") to its inbox, so that this bus's door checks them.
Its position on each upstream feed is committed with the records it carried, in
one transaction of this bus: a crash loses or doubles nothing.

Subcommands:
  run     run the bridge until Ctrl-C (the default)
  status  print the received items' states (flowing, revoked, not_granted), as the
          bridge recorded them in this bus (as --kafka-user: the admin or --department)
  item    print the item file this bus declares for an item of the upstream bus, as a
          grant of --fields at --grade delivers it (--upstream-catalog, --item)

With --api and --upstream-api (and both officers' tokens) the bridge also relays
disputes: one raised here on a received item is raised upstream by this bus's
department there; the upstream source's correction comes down as the same change
and closes it here, with this bus's receipts (a rejection, with its reason).

Passwords and tokens are best given in the environment (JUTONG_KAFKA_PASSWORD,
JUTONG_UPSTREAM_PASSWORD, JUTONG_OFFICER_TOKEN, JUTONG_UPSTREAM_OFFICER_TOKEN), not
on the command line.`

type bridgeFlags struct {
	catalogDir, department  string
	down                    cmdflag.Conn
	upBrokers, upUser, upCA string
	upPassword, upRegistry  string
	upDept, metricsAddr     string
	api, token              string
	upAPI, upToken          string
	rediscover              time.Duration
	verbose                 bool
}

func (b *bridgeFlags) register(fs *cmdflag.FlagSet) {
	fs.EnvStringVar(&b.catalogDir, "catalog", "JUTONG_CATALOG", "", "this (the receiving) bus's catalog directory")
	fs.EnvStringVar(&b.department, "department", "JUTONG_DEPARTMENT", "", "the upstream bus's department in it; default: the only department with \"bus\"")
	b.down.Register(fs, cmdflag.ConnDefaults{Brokers: "127.0.0.1:9092", Registry: "https://127.0.0.1:8081",
		UserIs: "this bus's principal of --department (run) or the admin (status); default: the department's principal"})
	fs.EnvStringVar(&b.upBrokers, "upstream-brokers", "JUTONG_UPSTREAM_BROKERS", "", "the upstream bus's Kafka brokers")
	fs.EnvStringVar(&b.upUser, "upstream-user", "JUTONG_UPSTREAM_USER", "", "this bus's principal on the upstream bus (its department there)")
	fs.EnvStringVar(&b.upPassword, "upstream-password", "JUTONG_UPSTREAM_PASSWORD", "", "its password")
	fs.EnvStringVar(&b.upCA, "upstream-ca", "JUTONG_UPSTREAM_CA_FILE", "", "the CA to trust on the upstream bus (SASL_SSL, HTTPS)")
	fs.EnvStringVar(&b.upRegistry, "upstream-registry", "JUTONG_UPSTREAM_REGISTRY_URL", "", "the upstream bus's schema registry")
	fs.EnvStringVar(&b.upDept, "upstream-department", "JUTONG_UPSTREAM_DEPARTMENT", "", "this bus's department code on the upstream bus (whose grants the bridge reads)")
	fs.EnvStringVar(&b.api, "api", "JUTONG_API_URL", "", "to relay disputes: this bus's HTTP API (empty: disputes are not relayed)")
	fs.EnvStringVar(&b.token, "officer-token", "JUTONG_OFFICER_TOKEN", "", "to relay disputes: --department's officer token on this bus")
	fs.EnvStringVar(&b.upAPI, "upstream-api", "JUTONG_UPSTREAM_API_URL", "", "to relay disputes: the upstream bus's HTTP API")
	fs.EnvStringVar(&b.upToken, "upstream-officer-token", "JUTONG_UPSTREAM_OFFICER_TOKEN", "", "to relay disputes: --upstream-department's officer token there")
	fs.EnvStringVar(&b.metricsAddr, "metrics-addr", "JUTONG_BRIDGE_METRICS_ADDR", "127.0.0.1:9464", "where /metrics listens (jutong_bridge_*); empty: nowhere")
	fs.EnvDurationVar(&b.rediscover, "rediscover", "JUTONG_BRIDGE_REDISCOVER", 10*time.Second, "how often to look again for the feeds of items not flowing")
	fs.BoolVar(&b.verbose, "v", false, "log progress (info level) to stderr")
}

// busDepartment is --department, or the catalog's only bus department.
func (b *bridgeFlags) busDepartment(cat *catalog.Catalog) (*catalog.Department, error) {
	if b.department != "" {
		d := cat.Department(b.department)
		if d == nil || d.Bus == "" {
			return nil, fmt.Errorf("--department %s: not a department of this catalog that stands for a bus", b.department)
		}
		return d, nil
	}
	var found []*catalog.Department
	for i := range cat.Departments {
		if cat.Departments[i].Bus != "" {
			found = append(found, &cat.Departments[i])
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("the catalog has %d departments that stand for a bus: name one with --department", len(found))
	}
	return found[0], nil
}

func connOf(k kafkaconn.Config, registry string) (connect.Config, error) {
	tc, err := k.TLS()
	if err != nil {
		return connect.Config{}, err
	}
	return connect.Config{Brokers: k.Brokers, User: k.User, Password: k.Password, Registry: registry, TLS: tc}, nil
}

func runBridge(ctx context.Context, args []string, out, errOut io.Writer) error {
	sub := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs := cmdflag.New("bridge "+sub, bridgeDesc, errOut)
	var b bridgeFlags
	b.register(fs)
	item := fs.String("item", "", "item: the upstream item's code")
	upCatalog := fs.String("upstream-catalog", "", "item: the upstream bus's catalog directory (empty: the sample)")
	fields := fs.String("fields", "", "item: the granted fields, comma separated (empty: every field)")
	grade := fs.Int("grade", 4, "item: the grant's grade")
	upBus := fs.String("upstream-bus", "city", "item: the upstream bus's name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch sub {
	case "item":
		return bridgeItem(out, *upCatalog, *item, *fields, *grade, *upBus, b.department)
	case "run", "status":
	default:
		return fmt.Errorf("unknown subcommand %q: run, status or item", sub)
	}
	cat, err := stack.LoadCatalog(b.catalogDir)
	if err != nil {
		return err
	}
	d, err := b.busDepartment(cat)
	if err != nil {
		return err
	}
	down := b.down.Kafka()
	if down.User == "" {
		down.User = d.Principal
	}
	if sub == "status" {
		opts, err := down.Opts()
		if err != nil {
			return err
		}
		st, err := bridge.ReadStatus(ctx, opts, d.Code)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ITEM\tFROM\tSTATE\tSINCE\tTOPIC\tREASON")
		for _, s := range st {
			fmt.Fprintf(tw, "%s\t%s:%s\t%s\t%s\t%s\t%s\n", s.Item, s.UpstreamBus, s.UpstreamItem, s.State, s.Since.Format(time.RFC3339), s.Topic, s.Reason)
		}
		return tw.Flush()
	}
	if b.upBrokers == "" || b.upUser == "" || b.upDept == "" || b.upRegistry == "" {
		return errors.New("--upstream-brokers, --upstream-user, --upstream-registry and --upstream-department are required")
	}
	downConn, err := connOf(down, b.down.Registry)
	if err != nil {
		return err
	}
	upConn, err := connOf(kafkaconn.Config{Brokers: kafkaconn.ParseBrokers(b.upBrokers), User: b.upUser, Password: b.upPassword, CAFile: b.upCA}, b.upRegistry)
	if err != nil {
		return err
	}
	log := cmdflag.Logger(errOut, b.verbose)
	var officers *bridge.Officers
	if b.api != "" || b.upAPI != "" {
		if b.api == "" || b.upAPI == "" || b.token == "" || b.upToken == "" {
			return errors.New("relaying disputes needs --api, --officer-token, --upstream-api and --upstream-officer-token")
		}
		officers = &bridge.Officers{DownstreamAPI: b.api, DownstreamToken: b.token, UpstreamAPI: b.upAPI, UpstreamToken: b.upToken,
			DownstreamHTTP: downConn.HTTPClient(), UpstreamHTTP: upConn.HTTPClient()}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	br, err := bridge.New(ctx, bridge.Config{Catalog: cat, Department: d.Code, Downstream: downConn, Upstream: upConn,
		UpstreamDepartment: b.upDept, Rediscover: b.rediscover, Logger: log, Registerer: reg, Officers: officers})
	if err != nil {
		return err
	}
	defer br.Close()
	if b.metricsAddr != "" {
		ln, err := net.Listen("tcp", b.metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		fmt.Fprintf(out, "bridge %s -> %s: metrics on http://%s/metrics\n", d.Bus, cat.BusName(), ln.Addr())
	}
	return br.Run(ctx)
}

// bridgeItem prints the received item's file for an upstream item.
func bridgeItem(out io.Writer, upCatalog, code, fields string, grade int, bus, source string) error {
	up, err := stack.LoadCatalog(upCatalog)
	if err != nil {
		return err
	}
	it := up.Item(code)
	if it == nil {
		return fmt.Errorf("--item %q: the upstream catalog has no such item", code)
	}
	g := feed.Grant{Item: code, Grade: grade}
	if fields == "" {
		for _, f := range it.Fields {
			g.Fields = append(g.Fields, f.Name)
		}
	} else {
		for _, f := range strings.Split(fields, ",") {
			f = strings.TrimSpace(f)
			if it.Field(f) == nil {
				return fmt.Errorf("--fields: %s has no field %q", code, f)
			}
			g.Fields = append(g.Fields, f)
		}
	}
	if source == "" {
		source = bus + "_bus"
	}
	b, err := json.MarshalIndent(bridge.ReceivedItem(it, g, bus, source), "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}
