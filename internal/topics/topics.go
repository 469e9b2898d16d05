// Package topics brings a Kafka cluster's topics in line with the catalog:
// one topic per item with the item's partitions, replication factor,
// retention and cleanup policy, plus Jutong's internal topics. Plan computes
// the changes (nothing when the cluster already matches), Apply makes them.
package topics

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
)

// Spec is the wanted state of one topic.
type Spec struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	Configs           map[string]string // retention.ms, cleanup.policy
}

// Change is one difference between the wanted and the actual state.
type Change struct {
	Topic  string
	Action string // "create", "add partitions", "set config", "cannot"
	Detail string
	spec   Spec
}

func (c Change) String() string { return fmt.Sprintf("%-16s %s  %s", c.Action, c.Topic, c.Detail) }

// Specs lists the wanted topics: one per catalog item and its flags topic,
// then internal ones.
// The replication factor is capped at the number of brokers.
func Specs(cat *catalog.Catalog, brokers int, internal ...Spec) []Spec {
	var out []Spec
	for _, it := range cat.Items {
		tc := cat.TopicConfig(it)
		s := Spec{Name: it.Topic(), Partitions: tc.Partitions, ReplicationFactor: tc.ReplicationFactor, Configs: map[string]string{}}
		if tc.RetentionMs != 0 {
			s.Configs["retention.ms"] = strconv.FormatInt(tc.RetentionMs, 10)
		}
		if tc.CleanupPolicy != "" {
			s.Configs["cleanup.policy"] = tc.CleanupPolicy
		}
		out = append(out, s, FlagsSpec(it.Topic(), tc.ReplicationFactor))
	}
	out = append(out, internal...)
	for i := range out {
		if out[i].ReplicationFactor <= 0 || int(out[i].ReplicationFactor) > brokers {
			out[i].ReplicationFactor = int16(brokers)
		}
	}
	return out
}

// FlagsSpec is the wanted state of a topic's flags topic
// (topicname.Flags): compacted, one partition (flags are few: one record a
// disputed record, the latest kept).
func FlagsSpec(topic string, rf int16) Spec {
	return Spec{Name: topicname.Flags(topic), Partitions: 1, ReplicationFactor: rf, Configs: map[string]string{"cleanup.policy": "compact"}}
}

// Plan compares the wanted topics with the cluster.
func Plan(ctx context.Context, adm *kadm.Client, specs []Spec) ([]Change, error) {
	existing, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("topics: list: %w", err)
	}
	var names []string
	for _, s := range specs {
		if existing.Has(s.Name) {
			names = append(names, s.Name)
		}
	}
	configs := map[string]map[string]string{}
	if len(names) > 0 {
		rcs, err := adm.DescribeTopicConfigs(ctx, names...)
		if err != nil {
			return nil, fmt.Errorf("topics: describe configs: %w", err)
		}
		for _, rc := range rcs {
			if rc.Err != nil {
				return nil, fmt.Errorf("topics: describe configs of %s: %w", rc.Name, rc.Err)
			}
			m := map[string]string{}
			for _, c := range rc.Configs {
				if c.Value != nil {
					m[c.Key] = *c.Value
				}
			}
			configs[rc.Name] = m
		}
	}
	var changes []Change
	for _, s := range specs {
		td, ok := existing[s.Name]
		if !ok {
			changes = append(changes, Change{Topic: s.Name, Action: "create", spec: s,
				Detail: fmt.Sprintf("partitions=%d replication=%d %s", s.Partitions, s.ReplicationFactor, fmtConfigs(s.Configs))})
			continue
		}
		if have := int32(len(td.Partitions)); have < s.Partitions {
			changes = append(changes, Change{Topic: s.Name, Action: "add partitions", spec: s, Detail: fmt.Sprintf("%d -> %d", have, s.Partitions)})
		} else if have > s.Partitions {
			changes = append(changes, Change{Topic: s.Name, Action: "cannot", spec: s,
				Detail: fmt.Sprintf("has %d partitions, the catalog says %d: Kafka cannot remove partitions", have, s.Partitions)})
		}
		if rf := int16(td.Partitions.NumReplicas()); rf != s.ReplicationFactor {
			changes = append(changes, Change{Topic: s.Name, Action: "cannot", spec: s,
				Detail: fmt.Sprintf("has replication factor %d, the catalog says %d: reassign partitions with Kafka's tools", rf, s.ReplicationFactor)})
		}
		diff := map[string]string{}
		for k, v := range s.Configs {
			if configs[s.Name][k] != v {
				diff[k] = v
			}
		}
		if len(diff) > 0 {
			changes = append(changes, Change{Topic: s.Name, Action: "set config", spec: Spec{Name: s.Name, Configs: diff},
				Detail: fmtConfigs(diff)})
		}
	}
	return changes, nil
}

func fmtConfigs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := ""
	for _, k := range keys {
		if out != "" {
			out += " "
		}
		out += k + "=" + m[k]
	}
	return out
}

// Apply makes the changes; "cannot" changes are left for an operator.
func Apply(ctx context.Context, adm *kadm.Client, changes []Change) error {
	for _, c := range changes {
		var err error
		switch c.Action {
		case "create":
			cfg := map[string]*string{}
			for k, v := range c.spec.Configs {
				cfg[k] = kadm.StringPtr(v)
			}
			var resp kadm.CreateTopicResponse
			resp, err = adm.CreateTopic(ctx, c.spec.Partitions, c.spec.ReplicationFactor, cfg, c.Topic)
			if err == nil {
				err = resp.Err
			}
			if errors.Is(err, kerr.TopicAlreadyExists) {
				err = nil // created meanwhile by another instance
			}
		case "add partitions":
			var resp kadm.CreatePartitionsResponses
			resp, err = adm.UpdatePartitions(ctx, int(c.spec.Partitions), c.Topic)
			if err == nil {
				err = resp.Error()
			}
		case "set config":
			var alters []kadm.AlterConfig
			for k, v := range c.spec.Configs {
				alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(v)})
			}
			var resp kadm.AlterConfigsResponses
			resp, err = adm.AlterTopicConfigs(ctx, alters, c.Topic)
			if err == nil {
				for _, r := range resp {
					if r.Err != nil {
						err = r.Err
					}
				}
			}
		}
		if err != nil {
			return fmt.Errorf("topics: %s %s: %w", c.Action, c.Topic, err)
		}
	}
	return nil
}

// Brokers counts the cluster's brokers.
func Brokers(ctx context.Context, adm *kadm.Client) (int, error) {
	bs, err := adm.ListBrokers(ctx)
	if err != nil {
		return 0, fmt.Errorf("topics: brokers: %w", err)
	}
	return len(bs), nil
}

// Ensure plans and applies in one go and returns what it changed.
func Ensure(ctx context.Context, adm *kadm.Client, cat *catalog.Catalog, internal ...Spec) ([]Change, error) {
	n, err := Brokers(ctx, adm)
	if err != nil {
		return nil, err
	}
	changes, err := Plan(ctx, adm, Specs(cat, n, internal...))
	if err != nil {
		return nil, err
	}
	return changes, Apply(ctx, adm, changes)
}
