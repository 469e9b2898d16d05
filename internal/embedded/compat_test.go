package embedded

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// roundTrip sends one request on a raw connection, as a client in any
// language does, and reads its answer.
func roundTrip(t *testing.T, conn net.Conn, corr int32, req kmsg.Request, resp kmsg.Response) {
	t.Helper()
	body := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	body = binary.BigEndian.AppendUint16(body, uint16(req.GetVersion()))
	body = binary.BigEndian.AppendUint32(body, uint32(corr))
	body = binary.BigEndian.AppendUint16(body, 5)
	body = append(body, "probe"...)
	if req.IsFlexible() {
		body = append(body, 0) // no tagged fields
	}
	body = req.AppendTo(body)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := conn.Write(append(frame, body...)); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	if int32(binary.BigEndian.Uint32(got)) != corr {
		t.Fatalf("correlation id %d, want %d", binary.BigEndian.Uint32(got), corr)
	}
	resp.SetVersion(req.GetVersion())
	if err := resp.ReadFrom(got[4:]); err != nil {
		t.Fatal(err)
	}
}

// The embedded brokers answer ApiVersions and SASLHandshake as a real
// broker with SCRAM-SHA-256 enabled does: kafkajs and librdkafka read them.
func TestAnswersOfARealBroker(t *testing.T) {
	ctx := context.Background()
	c, err := Start(ctx, Config{Brokers: 1, Ports: []int{0}, AdminUser: "jutong", AdminPassword: "pw"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dial := func() net.Conn {
		conn, err := net.DialTimeout("tcp", c.Addrs()[0], 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		return conn
	}

	conn := dial()
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 3
	av.ClientSoftwareName, av.ClientSoftwareVersion = "probe", "1"
	avr := kmsg.NewPtrApiVersionsResponse()
	roundTrip(t, conn, 1, av, avr)
	for _, k := range avr.ApiKeys {
		if k.ApiKey == keySASLHandshake && (k.MinVersion != 0 || k.MaxVersion != 1) {
			t.Errorf("SASLHandshake advertised %d..%d, a real broker says 0..1", k.MinVersion, k.MaxVersion)
		}
	}

	for _, tc := range []struct {
		mechanism string
		code      int16
	}{
		{"SCRAM-SHA-256", 0},
		{"SCRAM-SHA-512", kerr.UnsupportedSaslMechanism.Code}, // no user has it
		{"PLAIN", kerr.UnsupportedSaslMechanism.Code},
		{"GSSAPI", kerr.UnsupportedSaslMechanism.Code},
	} {
		// v1 only: v0 (raw SASL bytes after the handshake, Kafka before
		// 1.0) is not served, and no client of today sends it.
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, tc.mechanism
		resp := kmsg.NewPtrSASLHandshakeResponse()
		roundTrip(t, dial(), 2, hs, resp)
		if resp.ErrorCode != tc.code || !slices.Equal(resp.SupportedMechanisms, []string{Mechanism}) {
			t.Errorf("SASLHandshake %s: error %d mechanisms %q, want error %d and [%s]", tc.mechanism, resp.ErrorCode, resp.SupportedMechanisms, tc.code, Mechanism)
		}
	}
}
