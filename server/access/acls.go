package access

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
)

// PrincipalPrefix marks the principals whose ACLs Jutong owns.
const PrincipalPrefix = "User:dept."

// ACL is one allow rule.
type ACL struct {
	Principal string // User:dept.market_supervision
	Resource  kmsg.ACLResourceType
	Name      string
	Pattern   kmsg.ACLResourcePatternType
	Operation kmsg.ACLOperation
}

func (a ACL) String() string {
	return fmt.Sprintf("%s %s on %s %s (%s)", a.Principal, a.Operation, a.Resource, a.Name, a.Pattern)
}

// Read is a department's read access to one topic: an item's topic, or the
// projected feed of its grant.
type Read struct {
	Department string // code
	Topic      string
}

// GroupPrefix is the prefix of a department's consumer groups: one
// prefixed ACL covers them all.
func GroupPrefix(dept string) string { return dept + "." }

// Desired lists the ACLs the catalog and the active grants imply. A
// department writes only its own inbox (the door forwards what passes to
// the item topics; no department may write an item topic, the quarantine or
// any other of Jutong's topics), keeps its adapters' checkpoints in its own
// checkpoints topic (read and written under transactional ids prefixed with
// its principal), and reads its own rejects; the data authority reads every
// department's rejects; a source reads its own items' topics (what the door
// published in its name) and their flags topics. Each read gives READ and
// DESCRIBE on its topic and
// on the topic's flags topic (topicname.Flags), and READ on the
// department's consumer groups.
func Desired(cat *catalog.Catalog, reads ...Read) []ACL {
	var out []ACL
	lit := kmsg.ACLResourcePatternTypeLiteral
	for _, d := range cat.Departments {
		p := "User:" + d.Principal
		inbox, cps, rejects := topicname.Inbox(d.Code), topicname.Checkpoints(d.Code), topicname.Rejects(d.Code)
		out = append(out,
			ACL{p, kmsg.ACLResourceTypeCluster, "kafka-cluster", lit, kmsg.ACLOperationIdempotentWrite},
			ACL{p, kmsg.ACLResourceTypeTopic, inbox, lit, kmsg.ACLOperationWrite},
			ACL{p, kmsg.ACLResourceTypeTopic, inbox, lit, kmsg.ACLOperationDescribe},
			ACL{p, kmsg.ACLResourceTypeTopic, cps, lit, kmsg.ACLOperationWrite},
			ACL{p, kmsg.ACLResourceTypeTopic, cps, lit, kmsg.ACLOperationDescribe},
			ACL{p, kmsg.ACLResourceTypeTopic, cps, lit, kmsg.ACLOperationRead},
			ACL{p, kmsg.ACLResourceTypeTopic, rejects, lit, kmsg.ACLOperationRead},
			ACL{p, kmsg.ACLResourceTypeTopic, rejects, lit, kmsg.ACLOperationDescribe},
			ACL{p, kmsg.ACLResourceTypeTransactionalId, d.Principal + ".", kmsg.ACLResourcePatternTypePrefixed, kmsg.ACLOperationWrite},
			ACL{p, kmsg.ACLResourceTypeTransactionalId, d.Principal + ".", kmsg.ACLResourcePatternTypePrefixed, kmsg.ACLOperationDescribe},
		)
		if d.Code == cat.Authority {
			pre := kmsg.ACLResourcePatternTypePrefixed
			out = append(out,
				ACL{p, kmsg.ACLResourceTypeTopic, topicname.RejectsPrefix, pre, kmsg.ACLOperationRead},
				ACL{p, kmsg.ACLResourceTypeTopic, topicname.RejectsPrefix, pre, kmsg.ACLOperationDescribe},
			)
		}
	}
	// A source reads back its own items as the door published them (and
	// their flags): the records it sent, stamped, in their partitions.
	for _, it := range cat.Items {
		if d := cat.Department(it.Source); d != nil {
			p := "User:" + d.Principal
			for _, t := range []string{it.Topic(), topicname.Flags(it.Topic())} {
				out = append(out, ACL{p, kmsg.ACLResourceTypeTopic, t, lit, kmsg.ACLOperationRead}, ACL{p, kmsg.ACLResourceTypeTopic, t, lit, kmsg.ACLOperationDescribe})
			}
		}
	}
	// A department reads its rejects with a consumer group of its own.
	for _, d := range cat.Departments {
		out = append(out, ACL{"User:" + d.Principal, kmsg.ACLResourceTypeGroup, GroupPrefix(d.Code), kmsg.ACLResourcePatternTypePrefixed, kmsg.ACLOperationRead})
	}
	for _, r := range reads {
		d := cat.Department(r.Department)
		if d == nil {
			continue
		}
		p := "User:" + d.Principal
		flags := topicname.Flags(r.Topic) // its records' dispute flags, under the same grant
		out = append(out,
			ACL{p, kmsg.ACLResourceTypeTopic, r.Topic, lit, kmsg.ACLOperationRead},
			ACL{p, kmsg.ACLResourceTypeTopic, r.Topic, lit, kmsg.ACLOperationDescribe},
			ACL{p, kmsg.ACLResourceTypeTopic, flags, lit, kmsg.ACLOperationRead},
			ACL{p, kmsg.ACLResourceTypeTopic, flags, lit, kmsg.ACLOperationDescribe},
			ACL{p, kmsg.ACLResourceTypeGroup, GroupPrefix(d.Code), kmsg.ACLResourcePatternTypePrefixed, kmsg.ACLOperationRead},
		)
	}
	seen := map[ACL]bool{}
	uniq := out[:0]
	for _, a := range out {
		if !seen[a] {
			seen[a] = true
			uniq = append(uniq, a)
		}
	}
	return uniq
}

// Current lists the allow ACLs of Jutong-owned principals on the cluster.
func Current(ctx context.Context, adm *kadm.Client) ([]ACL, error) {
	res, err := adm.DescribeACLs(ctx, kadm.NewACLs().AnyResource().Allow().AllowHosts().
		Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny))
	if err != nil {
		return nil, fmt.Errorf("access: describe ACLs: %w", err)
	}
	var out []ACL
	for _, r := range res {
		if r.Err != nil {
			return nil, fmt.Errorf("access: describe ACLs: %w", r.Err)
		}
		for _, d := range r.Described {
			if !strings.HasPrefix(d.Principal, PrincipalPrefix) || d.Permission != kmsg.ACLPermissionTypeAllow {
				continue
			}
			out = append(out, ACL{d.Principal, d.Type, d.Name, d.Pattern, d.Operation})
		}
	}
	return out, nil
}

// Reconcile makes the Jutong-owned ACLs exactly want, and returns what it
// added and removed.
func Reconcile(ctx context.Context, adm *kadm.Client, want []ACL) (added, removed []ACL, err error) {
	have, err := Current(ctx, adm)
	if err != nil {
		return nil, nil, err
	}
	haveSet := map[ACL]bool{}
	for _, a := range have {
		haveSet[a] = true
	}
	wantSet := map[ACL]bool{}
	for _, a := range want {
		wantSet[a] = true
		if !haveSet[a] {
			added = append(added, a)
		}
	}
	for _, a := range have {
		if !wantSet[a] {
			removed = append(removed, a)
		}
	}
	for _, a := range added {
		res, err := adm.CreateACLs(ctx, builder(a))
		if err == nil {
			for _, r := range res {
				if r.Err != nil {
					err = r.Err
				}
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("access: create %s: %w", a, err)
		}
	}
	for _, a := range removed {
		res, err := adm.DeleteACLs(ctx, builder(a))
		if err == nil {
			for _, r := range res {
				if r.Err != nil {
					err = r.Err
				}
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("access: delete %s: %w", a, err)
		}
	}
	sortACLs(added)
	sortACLs(removed)
	return added, removed, nil
}

func sortACLs(a []ACL) { sort.Slice(a, func(i, j int) bool { return a[i].String() < a[j].String() }) }

// builder makes the kadm builder matching exactly one ACL.
func builder(a ACL) *kadm.ACLBuilder {
	b := kadm.NewACLs().Allow(a.Principal).AllowHosts("*").Operations(a.Operation).
		ResourcePatternType(a.Pattern)
	switch a.Resource {
	case kmsg.ACLResourceTypeTopic:
		b = b.Topics(a.Name)
	case kmsg.ACLResourceTypeGroup:
		b = b.Groups(a.Name)
	case kmsg.ACLResourceTypeCluster:
		b = b.Clusters()
	case kmsg.ACLResourceTypeTransactionalId:
		b = b.TransactionalIDs(a.Name)
	}
	return b
}
