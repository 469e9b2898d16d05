package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/server/proposals"
)

const proposalDesc = `The catalog as a governed workflow (docs/catalog.md, "Proposals"), through a running
bus's API as a department's officer:

  submit --item-file F --reason R   propose an item (new, or a change to one of your own): the
                                    whole item file, checked at once (catalog rules, evolution,
                                    grades, renames); refused with the rule and field named
  list                              the proposals (the authority: all; a department: its own)
  approve|changes|refuse ID         the data authority's verdict (changes and refuse need --reason);
                                    an approved proposal is the item's next version
  history ITEM                      every version of the item, who proposed and approved it
  diff ITEM FROM TO                 what changed between two versions

jutong catalog history ITEM and jutong catalog diff ITEM FROM TO are the same.`

// runProposal: jutong proposal.
func runProposal(ctx context.Context, args []string, out, errOut io.Writer) error {
	subs := []string{"submit", "list", "approve", "changes", "refuse", "history", "diff"}
	if len(args) == 0 || !contains(subs, args[0]) {
		fmt.Fprintf(errOut, "Usage: jutong proposal <%s> [flags]\n\n%s\n", strings.Join(subs, "|"), proposalDesc)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("a subcommand is required: " + strings.Join(subs, ", "))
	}
	sub := args[0]
	fs := cmdflag.New("proposal "+sub, proposalDesc+"\n\n"+controlDesc, errOut)
	var c controlFlags
	c.register(fs)
	itemFile := fs.String("item-file", "", "submit: the item's file (JSON, as items/<code>.json)")
	reason := fs.String("reason", "", "submit: why; changes, refuse: what to change, why not")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var raw []byte
	var err error
	switch sub {
	case "submit":
		if *itemFile == "" {
			return errors.New("--item-file is required")
		}
		item, err := os.ReadFile(*itemFile)
		if err != nil {
			return err
		}
		raw, err = c.call(ctx, "POST", "/v1/proposals", proposals.Request{Item: item, Reason: *reason})
		if err != nil {
			return err
		}
	case "list":
		if raw, err = c.call(ctx, "GET", "/v1/proposals", nil); err != nil {
			return err
		}
	case "approve", "changes", "refuse":
		if fs.NArg() != 1 {
			return fmt.Errorf("usage: jutong proposal %s ID [--reason R]", sub)
		}
		if raw, err = c.call(ctx, "POST", "/v1/proposals/"+fs.Arg(0)+"/"+sub, map[string]string{"reason": *reason}); err != nil {
			return err
		}
	case "history":
		if fs.NArg() != 1 {
			return errors.New("usage: jutong proposal history ITEM")
		}
		if raw, err = c.call(ctx, "GET", "/v1/catalog/items/"+fs.Arg(0)+"/history", nil); err != nil {
			return err
		}
	case "diff":
		if fs.NArg() != 3 {
			return errors.New("usage: jutong proposal diff ITEM FROM TO")
		}
		if raw, err = c.call(ctx, "GET", fmt.Sprintf("/v1/catalog/items/%s/diff?from=%s&to=%s", fs.Arg(0), fs.Arg(1), fs.Arg(2)), nil); err != nil {
			return err
		}
	}
	if c.asJSON {
		_, err := out.Write(raw)
		return err
	}
	switch sub {
	case "list":
		var ps []proposals.Proposal
		if err := json.Unmarshal(raw, &ps); err != nil {
			return err
		}
		for i := range ps {
			printProposal(out, &ps[i])
		}
	case "history":
		var vs []proposals.Version
		if err := json.Unmarshal(raw, &vs); err != nil {
			return err
		}
		for _, v := range vs {
			by := "the catalog's files"
			if v.Proposal != "" {
				by = fmt.Sprintf("%s by %s, approved by %s on %s", v.Proposal, v.ProposedBy, v.ApprovedBy, v.At.Format(time.DateOnly))
			}
			fmt.Fprintf(out, "version %d: %s (%d fields)\n", v.Version, by, len(v.Def.Fields))
		}
	case "diff":
		var d struct{ Changes []string }
		if err := json.Unmarshal(raw, &d); err != nil {
			return err
		}
		for _, l := range d.Changes {
			fmt.Fprintln(out, l)
		}
	default:
		var p proposals.Proposal
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		printProposal(out, &p)
	}
	return nil
}

func printProposal(w io.Writer, p *proposals.Proposal) {
	fmt.Fprintf(w, "proposal %s: %s proposes %s (version %d -> %d)\n  state     %s\n  due       %s\n  reason    %s\n",
		p.ID, p.Department, p.Item.Code, p.Base, p.Base+1, p.State, p.Due.Format(time.DateOnly), p.Reason)
	for _, c := range p.Changes {
		fmt.Fprintf(w, "  change    %s\n", c)
	}
	for _, d := range p.Duplicates {
		fmt.Fprintf(w, "  collected %s.%s (%s) ~ %s.%s (%s): %s\n", d.A.Item, d.A.Field, d.A.Source, d.B.Item, d.B.Field, d.B.Source, strings.Join(d.Evidence, "; "))
	}
	if p.Verdict != "" || p.DecidedBy != "" {
		fmt.Fprintf(w, "  verdict   %s by %s: %s\n", p.State, p.DecidedBy, p.Verdict)
	}
	if p.ApplyError != "" {
		fmt.Fprintf(w, "  applying  %s\n", p.ApplyError)
	}
}
