package control_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/jutong/jutong/internal/embedded"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/server/control"
)

// TestClientAgainstHandler drives the control API through Client, as the
// CLI does, against Handler on a real Service (state in the embedded Kafka):
// the whole review of an application, the listings, and every kind of
// refusal arriving as the service's own error.
func TestClientAgainstHandler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := embedded.Start(ctx, embedded.Config{Brokers: 1, Ports: []int{0}, AdminUser: "jutong", AdminPassword: "pw"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	admin, err := cluster.AdminClient()
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, control.Topic); err != nil {
		t.Fatal(err)
	}
	kopts, err := cluster.Admin().Opts()
	if err != nil {
		t.Fatal(err)
	}
	var applied [][]control.Grant
	svc, err := control.Open(ctx, control.Config{Catalog: cat, Kafka: kopts, OnGrants: func(_ context.Context, g []control.Grant) error {
		applied = append(applied, g)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	tokens := map[string]string{"health": "tok-health", "tax": "tok-tax", cat.Authority: "tok-authority", "public_security": "tok-ps"}
	srv := httptest.NewServer(control.Handler(svc, tokens, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	as := func(dept string) *control.Client { return control.NewClient(srv.URL+"/", tokens[dept], srv.Client()) }

	const item = "population.resident_registration" // conditional, owned by public security
	a, err := as("health").Apply(ctx, control.Request{Item: item, Purpose: "疫苗接种通知", Fields: []string{"name", "phone"}, Grade: 2})
	if err != nil || a.State != control.AuthorityReview || a.Department != "health" {
		t.Fatalf("apply: %+v %v", a, err)
	}
	// A request the service refuses names its field.
	_, err = as("health").Apply(ctx, control.Request{Item: "no.such_item", Purpose: "x"})
	var re *control.RequestError
	if !errors.As(err, &re) || re.Field == "" {
		t.Fatalf("a bad request: want a *control.RequestError naming the field, got %v", err)
	}
	// The source may not decide before the authority: a state conflict.
	if _, err := as("public_security").Approve(ctx, a.ID, control.Verdict{}); !errors.Is(err, control.ErrForbidden) {
		t.Fatalf("the source before the authority: want ErrForbidden, got %v", err)
	}
	// Another department cannot see it.
	if _, err := as("tax").Application(ctx, a.ID); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("tax reads health's application: %v", err)
	}
	if a, err = as(cat.Authority).Approve(ctx, a.ID, control.Verdict{}); err != nil || a.State != control.SourceReview {
		t.Fatalf("authority approves: %+v %v", a, err)
	}
	if a, err = as("public_security").Approve(ctx, a.ID, control.Verdict{Grade: 1}); err != nil || a.State != control.Granted || a.Grade != 1 {
		t.Fatalf("source approves at grade 1: %+v %v", a, err)
	}
	grants, err := as("health").Grants(ctx)
	if err != nil || len(grants) != 1 || grants[0].Item != item || grants[0].Grade != 1 {
		t.Fatalf("grants: %+v %v", grants, err)
	}
	if len(applied) == 0 || len(applied[len(applied)-1]) != 1 {
		t.Fatalf("the grant was not handed to OnGrants: %v", applied)
	}
	apps, err := as(cat.Authority).Applications(ctx, control.Filter{State: control.Granted})
	if err != nil || len(apps) != 1 || apps[0].ID != a.ID {
		t.Fatalf("the authority's granted list: %+v %v", apps, err)
	}
	if apps, err := as("tax").Applications(ctx, control.Filter{}); err != nil || len(apps) != 0 {
		t.Fatalf("tax sees %d applications (%v)", len(apps), err)
	}
	duties, err := as("public_security").Responsibilities(ctx)
	if err != nil || len(duties) == 0 {
		t.Fatalf("responsibilities: %v %v", duties, err)
	}
	for _, d := range duties {
		if d.Department != "public_security" {
			t.Fatalf("public security's list holds %s's item %s", d.Department, d.Item)
		}
	}
	// Tax, which has nothing to do with the grant, may not revoke it.
	if _, err := as("tax").Revoke(ctx, a.ID, control.Verdict{Reason: "x"}); !errors.Is(err, control.ErrForbidden) && !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("tax revokes health's grant: %v", err)
	}
	if a, err = as("public_security").Revoke(ctx, a.ID, control.Verdict{Reason: "数据用途已结束"}); err != nil || a.State != control.Revoked {
		t.Fatalf("revoke: %+v %v", a, err)
	}
	if grants, _ := as("health").Grants(ctx); len(grants) != 0 {
		t.Fatalf("a revoked grant is still listed: %+v", grants)
	}
	// A wrong token is refused.
	var ae *control.APIError
	if _, err := control.NewClient(srv.URL, "forged", nil).Grants(ctx); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("a forged token: want HTTP 401, got %v", err)
	}

	// Separation of duties. A source does not apply for its own item.
	if _, err := as("public_security").Apply(ctx, control.Request{Item: item, Purpose: "x"}); !errors.As(err, &re) || re.Field != "item" {
		t.Fatalf("the source applied for its own item: %v", err)
	}
	// The authority's own application skips its own review and waits on the
	// source; the authority cannot decide it, the source can.
	own, err := as(cat.Authority).Apply(ctx, control.Request{Item: item, Purpose: "人口统计"})
	if err != nil || own.State != control.SourceReview {
		t.Fatalf("the authority's own application: %+v %v", own, err)
	}
	if _, err := as(cat.Authority).Approve(ctx, own.ID, control.Verdict{}); !errors.Is(err, control.ErrForbidden) {
		t.Fatalf("the authority approved its own application: %v", err)
	}
	if own, err = as("public_security").Approve(ctx, own.ID, control.Verdict{}); err != nil || own.State != control.Granted {
		t.Fatalf("the source approves the authority's application: %+v %v", own, err)
	}
	// An applicant never decides its own application, at either stage.
	b, err := as("health").Apply(ctx, control.Request{Item: item, Purpose: "疫苗接种通知"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := as("health").Approve(ctx, b.ID, control.Verdict{}); !errors.Is(err, control.ErrForbidden) {
		t.Fatalf("health approved its own application: %v", err)
	}
	if _, err := as("health").Refuse(ctx, b.ID, control.Verdict{Reason: "x"}); !errors.Is(err, control.ErrForbidden) {
		t.Fatalf("health decided its own application: %v", err)
	}
}
