package grants

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/server/access"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/control"
)

// ACLs makes the Jutong-owned ACLs of the cluster exactly want.
type ACLs interface {
	Reconcile(ctx context.Context, want []access.ACL) (added, removed []access.ACL, err error)
}

// Feeds runs one masked feed per grant in want (by grant id) and stops the
// others. A new feed's topic exists when Sync returns, so that a department
// granted access finds it at once.
type Feeds interface {
	Sync(ctx context.Context, want map[string]feed.Grant) error
}

// AuditWriter keeps audit events.
type AuditWriter interface {
	Write(ctx context.Context, events ...audit.Event) error
}

// Config configures a Reconciler.
type Config struct {
	Catalog *catalog.Catalog
	ACLs    ACLs
	Feeds   Feeds
	// Databases make the databases' principals match the grants.
	Databases []Databases
	Audit     AuditWriter
	Log       *slog.Logger
}

// Reconciler makes Kafka match the active grants (see the package doc).
type Reconciler struct {
	cfg Config

	mu     sync.Mutex
	grants []control.Grant // as last applied
}

// New returns a reconciler.
func New(cfg Config) *Reconciler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{cfg: cfg}
}

// FeedGrant is what a feed needs of a grant.
func FeedGrant(g control.Grant) feed.Grant {
	return feed.Grant{ID: g.ID, Department: g.Department, Item: g.Item, Fields: g.Fields, Grade: g.Grade}
}

// Topic is the topic a grant reads: the item's own when the grant sees every
// field unmasked, else the grant's masked feed.
func Topic(it *catalog.Item, g control.Grant) string {
	return feed.Project(it, FeedGrant(g)).Topic(g.Department, g.ID)
}

// Apply makes Kafka match grants, the active grants (the control plane calls
// it at every change and on start): the feeds, then the ACLs, then the audit
// of what changed. Grants of items the catalog no longer has are skipped.
func (r *Reconciler) Apply(ctx context.Context, grants []control.Grant) error {
	var reads []access.Read
	feeds := map[string]feed.Grant{}
	for _, g := range grants {
		it := r.cfg.Catalog.Item(g.Item)
		if it == nil {
			continue
		}
		topic := Topic(it, g)
		reads = append(reads, access.Read{Department: g.Department, Topic: topic})
		if topic != it.Topic() {
			feeds[g.ID] = FeedGrant(g)
		}
	}
	if err := r.cfg.Feeds.Sync(ctx, feeds); err != nil {
		return err
	}
	added, removed, err := r.cfg.ACLs.Reconcile(ctx, access.Desired(r.cfg.Catalog, reads...))
	if err != nil {
		return err
	}
	for _, db := range r.cfg.Databases {
		if err := db.Sync(ctx, grants); err != nil {
			// Kafka is in line; the databases are tried again at the next change or tick.
			r.cfg.Log.Error("database principals not reconciled", "err", err)
		}
	}
	r.mu.Lock()
	r.grants = append([]control.Grant(nil), grants...)
	r.mu.Unlock()
	if len(added)+len(removed) == 0 {
		return nil
	}
	r.cfg.Log.Info("ACLs reconciled with the catalog and the grants", "added", len(added), "removed", len(removed))
	var evs []audit.Event
	for _, a := range added {
		evs = append(evs, audit.Event{Kind: audit.ACLAdded, Department: deptOf(a.Principal), Actor: "jutong", Detail: a.String()})
	}
	for _, a := range removed {
		evs = append(evs, audit.Event{Kind: audit.ACLRemove, Department: deptOf(a.Principal), Actor: "jutong", Detail: a.String()})
	}
	if err := r.cfg.Audit.Write(ctx, evs...); err != nil {
		// The ACLs are in force; the trail misses these lines, loudly.
		r.cfg.Log.Error("audit write failed", "err", err)
	}
	return nil
}

// SyncDatabases makes the databases' roles match the grants last applied
// again (the bus calls it every minute: a database that was down, a table
// its sink made since).
func (r *Reconciler) SyncDatabases(ctx context.Context) error {
	r.mu.Lock()
	grants := append([]control.Grant(nil), r.grants...)
	r.mu.Unlock()
	var errs []error
	for _, db := range r.cfg.Databases {
		errs = append(errs, db.Sync(ctx, grants))
	}
	return errors.Join(errs...)
}

// deptOf turns "User:dept.health" into "health".
func deptOf(principal string) string {
	return strings.TrimPrefix(principal, access.PrincipalPrefix)
}

// ResolveRead attributes a consumer group's read of a topic: the department
// whose group it is (groups are prefixed with the department's code), the
// item, and the grant it reads under (none for an unconditional item read
// without one); a read of a topic's flags topic counts as a read of the
// topic. ok is false for reads that are not a department's.
func (r *Reconciler) ResolveRead(group, topic string) (dept, item, grant string, ok bool) {
	dept, _, found := strings.Cut(group, ".")
	if !found || r.cfg.Catalog.Department(dept) == nil {
		return "", "", "", false
	}
	if of, isFlags := topicname.FlagsOf(topic); isFlags {
		topic = of // a read of the records' flags is a read under the same grant
	}
	if fd, fi, fg, isFeed := topicname.ParseFeed(topic); isFeed {
		return fd, fi, fg, fd == dept
	}
	if r.cfg.Catalog.Item(topic) == nil {
		return "", "", "", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.grants {
		if g.Department == dept && g.Item == topic {
			grant = g.ID
		}
	}
	return dept, topic, grant, true
}
