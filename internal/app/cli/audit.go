package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/signed"
)

const auditDesc = `Checks the audit trail, and hands out the key it is checked with.

Subcommands:
  verify   walk the trail from Kafka (--from kafka, the default) or from ClickHouse
           (--from clickhouse) and check every writer's hash chain and the signed heads
           with the bus's public key: exit 1, naming the first record (its offset) that
           was changed, removed or inserted. Records after their chain's last head (at
           most a minute's worth while the bus runs) are chained but not yet sealed.
  key      print the bus's public key (base64), which departments verify dispute
           receipts and grant decisions with, offline.
  verify-document [FILE]
           check a signed document (a JWS, EdDSA: what the API answers to Accept:
           application/jose for GET /v1/applications/{id} and /v1/disputes/{id})
           read from FILE or stdin with --public-key, offline, and print its JSON;
           exit 1 when a byte of it was changed or another key signed it.`

func runAudit(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "key" && args[0] != "verify-document") {
		fmt.Fprintf(errOut, "Usage: jutong audit verify|key|verify-document [flags]\n\n%s\n", auditDesc)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("a subcommand is required: verify or key")
	}
	fs := cmdflag.New("audit "+args[0], auditDesc, errOut)
	pubFlag := fs.EnvString("public-key", "JUTONG_AUDIT_PUBLIC_KEY", "", "the bus's public key: its PEM file (<secrets-dir>/"+audit.PublicKeyFile+"; jutong.env names dev's) or its base64 (required)")
	from := fs.String("from", "kafka", "where to read the trail: kafka (the topic) or clickhouse (the audit table)")
	topic := fs.String("topic", audit.Topic, "the topic to verify (a copy of the trail, say)")
	var conn cmdflag.Conn
	conn.Register(fs, cmdflag.ConnDefaults{Brokers: "127.0.0.1:9092", User: "jutong", UserIs: "one allowed to read the audit topic (the bus's admin, the data authority's auditor)"})
	chDSN := fs.EnvString("clickhouse-dsn", "JUTONG_CLICKHOUSE_DSN", "", "ClickHouse holding the audit table, for --from clickhouse")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *pubFlag == "" {
		return errors.New("--public-key (or JUTONG_AUDIT_PUBLIC_KEY) is required: the bus writes it to <secrets-dir>/" + audit.PublicKeyFile)
	}
	pub, err := audit.ReadPublicKey(*pubFlag)
	if err != nil {
		return fmt.Errorf("--public-key: %w", err)
	}
	switch args[0] {
	case "key":
		fmt.Fprintln(out, base64.StdEncoding.EncodeToString(pub))
		return nil
	case "verify-document":
		var in io.Reader = os.Stdin
		if fs.NArg() > 0 {
			f, err := os.Open(fs.Arg(0))
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		jws, err := io.ReadAll(io.LimitReader(in, 16<<20))
		if err != nil {
			return err
		}
		payload, err := signed.Verify(pub, string(jws))
		if err != nil {
			return err
		}
		fmt.Fprintln(out, string(payload))
		return nil
	}
	var rep audit.Report
	switch *from {
	case "kafka":
		kopts, err := conn.Kafka().Opts()
		if err != nil {
			return err
		}
		if rep, err = audit.VerifyKafka(ctx, kopts, *topic, pub); err != nil {
			return err
		}
	case "clickhouse":
		if *chDSN == "" {
			return errors.New("--from clickhouse needs --clickhouse-dsn (or JUTONG_CLICKHOUSE_DSN)")
		}
		opts, err := clickhouse.ParseDSN(*chDSN)
		if err != nil {
			return fmt.Errorf("--clickhouse-dsn: %w", err)
		}
		ch, err := clickhouse.Open(opts)
		if err != nil {
			return err
		}
		defer ch.Close()
		if rep, err = audit.VerifyClickHouse(ctx, ch, pub); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--from %q: want kafka or clickhouse", *from)
	}
	fmt.Fprintln(out, rep)
	if !rep.OK() {
		return fmt.Errorf("the audit trail was tampered with: %s", rep.Problems[0])
	}
	return nil
}
