package bus

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/jutong/jutong/internal/app/grants"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dbaccess"
)

// openDisputes lists a record's open disputes, once the disputes are open
// (the feeds and the door may start before).
func (b *Bus) openDisputes(item, key string) []string {
	if d := b.disputesRef.Load(); d != nil {
		return d.OpenOn(item, key)
	}
	return nil
}

// startControl opens the control plane, whose grants the reconciler applies
// (ACLs, feeds) at every change and on open, its tick loop, and the read
// auditor with the subscriber-lag gauge.
func (b *Bus) startControl(ctx, rctx context.Context) (err error) {
	log := b.cfg.Log.With("component", "control")
	name := b.cfg.Pipeline.InstanceID
	if name == "" {
		name = "jutong"
	}
	if b.audit, err = audit.NewWriter(b.kopts, b.auditKey, name); err != nil {
		return err
	}
	b.onClose("audit writer", b.audit.Close)
	if b.auditMetrics, err = audit.NewMetrics(b.Metrics); err != nil {
		return err
	}
	b.audit.Metrics = b.auditMetrics
	b.tick(rctx, every(b.cfg.AuditSealEvery), "audit seal", log, b.audit.Seal)
	b.feeds = &grants.FeedRunner{Catalog: b.cfg.Catalog, Kafka: b.kopts, Registry: b.RegistryOpts(), Pipeline: b.pcfg, KeySecret: b.feedKey, Prefix: b.prefix(), Log: log,
		Disputes: b.openDisputes, Started: b.feedStarted}
	b.onClose("feeds", func(context.Context) error { b.feeds.Close(); return nil })
	var dbs []grants.Databases
	pw := ""
	if d := b.cfg.SecretsDir; d != "" {
		pw = filepath.Join(d, "db-credentials.json")
	}
	if b.cfg.ClickHouseDSN != "" && !b.cfg.NoDatabaseRoles {
		b.analysts = &grants.ClickHouseAnalysts{Catalog: b.cfg.Catalog, DSN: b.cfg.ClickHouseDSN, UsersDir: b.cfg.ClickHouseUsersDir, Passwords: pw,
			UserPrefix: b.DatabaseRolePrefix(), KeySecret: b.feedKey, Authority: b.cfg.AuthorityAnalysts, AuthorityGrade: b.cfg.AuthorityAnalystGrade, Pipeline: b.pcfg, Log: log}
		b.onClose("analysts' databases", func(context.Context) error { b.analysts.Close(); return nil })
		dbs = append(dbs, b.analysts)
	}
	if b.cfg.PostgresDSN != "" && !b.cfg.NoDatabaseRoles {
		db, err := b.pg(ctx)
		if err != nil {
			return err
		}
		b.dbRoles = &grants.PostgresRoles{Catalog: b.cfg.Catalog, DSN: b.cfg.PostgresDSN, DB: db, RolePrefix: b.DatabaseRolePrefix(), SetPasswords: b.cluster != nil || b.cfg.CreateUsers, Passwords: pw, KeySecret: b.feedKey, Pipeline: b.pcfg, Audit: b.audit, Log: log}
		b.onClose("grant tables", func(context.Context) error { b.dbRoles.Close(); return nil })
		dbs = append(dbs, b.dbRoles)
	}
	b.grants = grants.New(grants.Config{Catalog: b.cfg.Catalog, ACLs: grants.KafkaACLs{Kafka: b.kopts}, Feeds: b.feeds, Databases: dbs, Audit: b.audit, Log: log})
	if len(dbs) > 0 {
		if err := b.startDBReads(ctx); err != nil {
			return err
		}
		// Often: a table a sink has just made is granted within seconds.
		b.tick(rctx, 15*time.Second, "database roles", log, b.grants.SyncDatabases)
	}
	b.Control, err = control.Open(ctx, control.Config{
		Catalog: b.cfg.Catalog, Kafka: b.kopts, Audit: b.audit, Published: b.published,
		OnGrants: b.grants.Apply, Now: b.cfg.Now, Log: log,
	})
	if err != nil {
		return err
	}
	b.onClose("control plane", func(context.Context) error { b.Control.Close(); return nil })
	b.Metrics.MustRegister(b.Control.Collector())
	b.subLag = grants.LagGauge(b.Metrics)
	b.wg.Go(func() { b.Control.Run(rctx, every(b.cfg.ControlEvery)) })
	if b.reads, err = audit.NewReads(b.kopts, b.prefix(), b.auditKey, b.grants.ResolveRead); err != nil {
		return err
	}
	b.reads.Metrics = b.auditMetrics
	b.onClose("read auditor", func(context.Context) error { b.reads.Close(); return nil })
	b.tick(rctx, every(b.cfg.ReadAuditEvery), "read audit", log, func(ctx context.Context) error {
		_, err := b.AuditReads(ctx)
		return err
	})
	return nil
}

// tick runs fn every d until rctx is done, logging its failures.
func (b *Bus) tick(rctx context.Context, d time.Duration, what string, log *slog.Logger, fn func(context.Context) error) {
	b.wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if err := fn(rctx); err != nil && rctx.Err() == nil {
					log.Warn(what+" failed", "err", err)
				}
			}
		}
	})
}

// every is d, or a minute when unset.
func every(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Minute
	}
	return d
}

// AuditReads audits the departments' reads and updates their lag now (the
// bus does it every ReadAuditEvery).
func (b *Bus) AuditReads(ctx context.Context) ([]audit.Event, error) {
	evs, err := b.reads.Poll(ctx)
	if b.dbReads != nil {
		devs, derr := b.dbReads.Poll(ctx)
		evs, err = append(evs, devs...), errors.Join(err, derr)
	}
	if lerr := b.grants.RefreshLag(ctx, b.kopts, b.subLag); lerr != nil {
		b.cfg.Log.Warn("the subscribers' lag could not be read", "err", lerr)
	}
	return evs, err
}

// published says whether an item's topic has any record.
func (b *Bus) published(ctx context.Context, item string) (bool, error) {
	admin, err := kafkaconn.NewClient(b.kopts)
	if err != nil {
		return false, err
	}
	defer admin.Close()
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, item)
	if err != nil {
		return false, err
	}
	any := false
	ends.Each(func(o kadm.ListedOffset) { any = any || o.Offset > 0 })
	return any, nil
}

// AuditPublicKey is the public key the audit trail's chains verify with.
func (b *Bus) AuditPublicKey() ed25519.PublicKey { return b.auditKey.Public().(ed25519.PublicKey) }

// DatabaseRole is a department's PostgreSQL login (its role and password),
// and whether the bus keeps database roles at all.
func (b *Bus) DatabaseRole(dept string) (role, password string, ok bool, err error) {
	if b.dbRoles == nil {
		return "", "", false, nil
	}
	pw, err := b.dbRoles.Password(dept)
	return dbaccess.Role(b.DatabaseRolePrefix(), dept), pw, err == nil, err
}

// AnalystLogin is a department's analysts' ClickHouse login and database.
func (b *Bus) AnalystLogin(dept string) (user, password, database string, ok bool, err error) {
	if b.analysts == nil {
		return "", "", "", false, nil
	}
	user, password, database, err = b.analysts.User(dept)
	return user, password, database, err == nil, err
}

// DatabaseRolePrefix begins the departments' database roles: the group
// prefix with '_' for '.' ("jutong_"), so that two deployments sharing a
// database server keep their roles apart.
func (b *Bus) DatabaseRolePrefix() string { return strings.ReplaceAll(b.prefix(), ".", "_") }

// startDBReads starts the auditor of the departments' database reads
// (PostgreSQL roles, ClickHouse analysts).
func (b *Bus) startDBReads(ctx context.Context) error {
	var pool *pgxpool.Pool
	if b.dbRoles != nil {
		pool = b.dbRoles.DB // the bus's pool
	}
	var ch driver.Conn
	if b.analysts != nil {
		opts, err := clickhouse.ParseDSN(b.cfg.ClickHouseDSN)
		if err != nil {
			return err
		}
		if ch, err = clickhouse.Open(opts); err != nil {
			return err
		}
		b.onClose("database read auditor's ClickHouse", func(context.Context) error { return ch.Close() })
	}
	var err error
	if b.dbReads, err = audit.NewDBReads(b.kopts, b.prefix(), b.auditKey, pool, b.DatabaseRolePrefix(), ch); err != nil {
		return err
	}
	b.dbReads.Metrics = b.auditMetrics
	b.onClose("database read auditor", func(context.Context) error { b.dbReads.Close(); return nil })
	return nil
}
