// Package apply brings a cluster and a schema registry in line with the
// catalog, as `jutong catalog check` and `jutong catalog apply` do: it plans
// the topic changes (internal/topics) and the schema registrations, applies
// them, and checks the catalog's schemas against the registered versions.
package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/topics"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// Check generates every item's schema and, with a registry client (nil:
// none), checks each against the versions registered for its subject. It
// returns the problems found; the error is for a registry that cannot be
// asked.
func Check(ctx context.Context, cat *catalog.Catalog, rc *sr.Client) ([]string, error) {
	var problems []string
	for _, it := range cat.Items {
		s, err := schemas.For(it)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if rc == nil {
			continue
		}
		res, err := rc.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), it.Subject(), -2, sr.Schema{Schema: s.JSON}) // verbose: with the reasons
		var re *sr.ResponseError
		switch {
		case errors.As(err, &re) && re.ErrorCode == 40401:
			// A new item: nothing registered yet.
		case err != nil:
			return nil, fmt.Errorf("registry: %s: %w", it.Subject(), err)
		case !res.Is:
			problems = append(problems, fmt.Sprintf("item %s: schema incompatible with subject %s: %s", it.Code, it.Subject(), strings.Join(res.Messages, "; ")))
		}
	}
	return problems, nil
}

// Registration is a schema to register.
type Registration struct {
	Subject, Schema string
}

// Plan is what applying the catalog would change.
type Plan struct {
	Topics  []topics.Change
	Schemas []Registration

	adm *kadm.Client
	cl  *kgo.Client
	rc  *sr.Client
}

// NewPlan works out the topic changes (the items' topics and the internal
// ones given) and the schemas not registered yet. Close releases it.
func NewPlan(ctx context.Context, cat *catalog.Catalog, kafka []kgo.Opt, rc *sr.Client, internal ...topics.Spec) (_ *Plan, err error) {
	cl, err := kafkaconn.NewClient(kafka)
	if err != nil {
		return nil, err
	}
	p := &Plan{adm: kadm.NewClient(cl), cl: cl, rc: rc}
	defer func() {
		if err != nil {
			cl.Close()
		}
	}()
	n, err := topics.Brokers(ctx, p.adm)
	if err != nil {
		return nil, err
	}
	if p.Topics, err = topics.Plan(ctx, p.adm, topics.Specs(cat, n, internal...)); err != nil {
		return nil, err
	}
	want, err := Registrations(cat)
	if err != nil {
		return nil, err
	}
	for _, r := range want {
		_, err = rc.LookupSchema(ctx, r.Subject, sr.Schema{Schema: r.Schema})
		var re *sr.ResponseError
		switch {
		case err == nil:
			continue // registered already
		case errors.As(err, &re) && (re.ErrorCode == 40401 || re.ErrorCode == 40403):
			p.Schemas = append(p.Schemas, r)
		default:
			return nil, fmt.Errorf("registry: %s: %w", r.Subject, err)
		}
	}
	return p, nil
}

// Registrations are the schemas the catalog implies: each item's change
// event under its subject, and the flag schema under its flags topic's.
func Registrations(cat *catalog.Catalog) ([]Registration, error) {
	var out []Registration
	for _, it := range cat.Items {
		s, err := schemas.For(it)
		if err != nil {
			return nil, err
		}
		out = append(out, Registration{it.Subject(), s.JSON}, Registration{topicname.Flags(it.Topic()) + "-value", schemas.FlagSchema})
	}
	return out, nil
}

// Empty says whether there is nothing to change.
func (p *Plan) Empty() bool { return len(p.Topics) == 0 && len(p.Schemas) == 0 }

// Cannot counts the topic differences that need an operator (fewer
// partitions than now, another replication factor).
func (p *Plan) Cannot() int {
	n := 0
	for _, c := range p.Topics {
		if c.Action == "cannot" {
			n++
		}
	}
	return n
}

// Apply makes the changes; registered is told of each schema registered.
func (p *Plan) Apply(ctx context.Context, registered func(subject string, id int)) error {
	if err := topics.Apply(ctx, p.adm, p.Topics); err != nil {
		return err
	}
	for _, r := range p.Schemas {
		id, err := p.rc.RegisterSchema(ctx, r.Subject, sr.Schema{Schema: r.Schema}, -1, -1)
		if err != nil {
			return fmt.Errorf("register %s: %w", r.Subject, err)
		}
		if registered != nil {
			registered(r.Subject, id)
		}
	}
	return nil
}

// Close releases the plan's Kafka client.
func (p *Plan) Close() { p.cl.Close() }
