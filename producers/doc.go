// Package producers is the publisher SDK that department systems use to put
// the changes of their catalog items on the bus.
//
// A Publisher authenticates as its department, checks every event against the
// item's contract (package contract) before anything is produced, encodes it
// in Avro with the schema registered for the item (Confluent framing) and
// produces it to the item's topic keyed by the business key, with the
// idempotent producer, so that all changes of one entity stay in order.
//
//	conn := connect.Config{Brokers: []string{"127.0.0.1:9092"}, User: user, Password: pass,
//		Registry: "https://127.0.0.1:8081", TLS: trustingTheBusCA}
//	pub, err := producers.New(ctx, cat, "market_supervision", conn)
//	...
//	err = pub.Publish(ctx, "legal_person.enterprise_registration", events...)
package producers
