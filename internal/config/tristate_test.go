package config

import "testing"

func TestTristateText(t *testing.T) {
	for _, tc := range []struct {
		text      string
		want      Tristate
		value, ok bool
	}{
		{"auto", Auto, false, false},
		{"true", True, true, true},
		{"false", False, false, true},
		{"True", True, true, true},
		{"AUTO", Auto, false, false},
	} {
		var got Tristate = False
		if err := got.UnmarshalText([]byte(tc.text)); err != nil {
			t.Errorf("UnmarshalText(%q): %v", tc.text, err)
			continue
		}
		if got != tc.want {
			t.Errorf("UnmarshalText(%q) = %v, want %v", tc.text, got, tc.want)
		}
		if v, ok := got.Bool(); v != tc.value || ok != tc.ok {
			t.Errorf("%v.Bool() = %v, %v; want %v, %v", got, v, ok, tc.value, tc.ok)
		}
		back, _ := got.MarshalText()
		var again Tristate
		if err := again.UnmarshalText(back); err != nil || again != got {
			t.Errorf("%v does not read back from %q: %v, %v", got, back, again, err)
		}
	}
	for _, text := range []string{"", "yes", "on", "1", "maybe"} {
		var got Tristate
		if err := got.UnmarshalText([]byte(text)); err == nil {
			t.Errorf("UnmarshalText(%q) accepted it as %v", text, got)
		}
	}
}
