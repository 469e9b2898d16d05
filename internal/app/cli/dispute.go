package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/server/dispute"
)

const disputeDesc = `Disputes of shared records, as a department's officer:
  raise    dispute a record of an item the department reads (--item, --key, --fields,
           --claim, --evidence); the same record and field joins the open dispute
  list     the disputes the department may see (raised, joined, on its items)
  reject   ID --reason: the source says why the record stands
  correct  ID --event-id: the source names the change that corrected the record`

// runDispute: jutong dispute.
func runDispute(ctx context.Context, args []string, out, errOut io.Writer) error {
	subs := []string{"raise", "list", "reject", "correct"}
	if len(args) == 0 || !contains(subs, args[0]) {
		fmt.Fprintf(errOut, "Usage: jutong dispute <raise|list|reject|correct> [flags]\n\n%s\n", disputeDesc)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("a subcommand is required: raise, list, reject or correct")
	}
	sub := args[0]
	fs := cmdflag.New("dispute "+sub, disputeDesc, errOut)
	var c controlFlags
	c.register(fs)
	item := fs.String("item", "", "raise: the catalog item")
	key := fs.String("key", "", "raise: the disputed record's key")
	fields := fs.String("fields", "", "raise: the fields thought wrong, comma separated")
	claim := fs.String("claim", "", "raise: what is right, and why")
	evidence := fs.String("evidence", "", "raise: supporting text")
	reason := fs.String("reason", "", "reject: why the record stands")
	eventID := fs.String("event-id", "", "correct: the event id of the correcting change")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var method, path string
	var body any
	switch sub {
	case "raise":
		method, path = "POST", "/v1/disputes"
		body = dispute.Request{Item: *item, Key: *key, Fields: splitList(*fields), Claim: *claim, Evidence: *evidence}
	case "list":
		method, path = "GET", "/v1/disputes"
	default:
		if fs.NArg() != 1 {
			return fmt.Errorf("usage: jutong dispute %s ID", sub)
		}
		method, path = "POST", "/v1/disputes/"+fs.Arg(0)+"/"+sub
		body = map[string]string{"reason": *reason, "event_id": *eventID}
	}
	raw, err := c.call(ctx, method, path, body)
	if err != nil {
		return err
	}
	if c.asJSON {
		_, err := out.Write(raw)
		return err
	}
	if sub == "list" {
		var ds []dispute.Dispute
		if err := json.Unmarshal(raw, &ds); err != nil {
			return err
		}
		for i := range ds {
			printDispute(out, &ds[i])
		}
		return nil
	}
	var d dispute.Dispute
	if err := json.Unmarshal(raw, &d); err != nil {
		return err
	}
	printDispute(out, &d)
	return nil
}

func printDispute(w io.Writer, d *dispute.Dispute) {
	fmt.Fprintf(w, "dispute %s: %s disputes %s %s (%s)\n  state     %s", d.ID, d.RaisedBy, d.Item, d.Key, strings.Join(d.Fields, ", "), d.State)
	if d.Escalated {
		fmt.Fprint(w, "  OVERDUE (escalated)")
	}
	fmt.Fprintf(w, "\n  source    %s, due %s\n  claim     %s\n", d.Source, d.Due.Format("2006-01-02 15:04 MST"), d.Claim)
	if len(d.Joined) > 0 {
		fmt.Fprintf(w, "  joined    %s\n", strings.Join(d.Joined, ", "))
	}
	if d.Reason != "" {
		fmt.Fprintf(w, "  rejected  %s\n", d.Reason)
	}
	if d.Correction != "" {
		fmt.Fprintf(w, "  corrected by event %s (in time: %v)\n", d.Correction, d.InTime)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
