package demo

import (
	"context"
	"fmt"
	"io"

	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/server/open"
)

// demoOpen releases the open items (the bus does it every minute) and
// prints where the public finds them.
func demoOpen(ctx context.Context, out io.Writer, st *stack.Stack) error {
	n, err := st.Bus.RefreshOpen(ctx)
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	listed, released := 0, 0
	for _, it := range st.Catalog.Items {
		if open.Listed(it) {
			listed++
		}
		if open.Open(it) {
			released++
		}
	}
	u := st.Bus.PortalURL()
	fmt.Fprintf(out, "\nOpen data (开放系统): %d datasets in the open catalog, %d released de-identified (%d releases made now)\n", listed, released, n)
	fmt.Fprintf(out, "  portal   %s  (in a browser that trusts %s)\n", u, st.CAFile())
	fmt.Fprintf(out, "  CKAN     curl --cacert %s '%sapi/3/action/package_search?q=企业'\n", st.CAFile(), u)
	fmt.Fprintf(out, "  download curl --cacert %s -L -O '%sopen/download/legal_person.enterprise_registration/latest.csv'\n", st.CAFile(), u)
	return nil
}
