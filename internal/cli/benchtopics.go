package cli
import ("context";"io";"errors")
func benchTopics(ctx context.Context, args []string, out, errOut io.Writer) error { return errors.New("todo") }
