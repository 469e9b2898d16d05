package rules

import "testing"

func TestCheckJSONText(t *testing.T) {
	for _, tc := range []struct {
		in    string
		field string // "" with ok: accepted
		ok    bool
	}{
		{`{"name":"重庆"}`, "", true},
		{`{"name":"\u91cd\u5e86"}`, "", true},
		{`{"name":"\ud83d\ude00 smile"}`, "", true}, // a pair: one character
		{`{"name":"\\ud800"}`, "", true},            // an escaped backslash, then text
		{`{"name":"a\"\ud800"}`, "name", false},
		{`{"key":"x","name":"\ud800"}`, "name", false},
		{`{"name":"\udcff"}`, "name", false},            // a low surrogate alone
		{`{"name":"\ud800\u0041"}`, "name", false},      // a high one before no low one
		{`{"name":"\ud800"} `, "name", false},           // at the end
		{"{\"addr\":\"\xff\"}", "addr", false},          // raw invalid UTF-8
		{`{"data":{"phone":"\uDBFF"}}`, "phone", false}, // upper case
	} {
		v := CheckJSONText(3, []byte(tc.in))
		switch {
		case tc.ok && v != nil:
			t.Errorf("%s: refused: %+v", tc.in, v)
		case !tc.ok && (v == nil || v.Rule != "text.utf8" || v.Field != tc.field):
			t.Errorf("%s: %+v, want text.utf8 on %q", tc.in, v, tc.field)
		}
	}
}
