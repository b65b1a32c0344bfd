package gallery

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		ok      bool
		m, n, p int
	}{
		{in: "0.0.0", ok: true},
		{in: "1.0.7", ok: true, m: 1, p: 7},
		{in: "10.20.30", ok: true, m: 10, n: 20, p: 30},
		{in: "2147483647.2147483647.2147483647", ok: true, m: 2147483647, n: 2147483647, p: 2147483647},
		{in: "1.0.2147483648"},
		{in: "99999999999999999999.0.0"},
		{in: ""},
		{in: "1"},
		{in: "1.0"},
		{in: "1.0.0.0"},
		{in: "v1.0.0"},
		{in: "1.0.0-beta"},
		{in: "1.0.0+build"},
		{in: "01.0.0"},
		{in: "1.00.0"},
		{in: "-1.0.0"},
		{in: " 1.0.0"},
		{in: "1.0.0\n"},
		{in: "a.b.c"},
		{in: "1..0"},
		{in: "../1.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, err := ParseVersion(tt.in)
			if !tt.ok {
				if err == nil {
					t.Fatalf("ParseVersion(%q) = %v, want an error", tt.in, v)
				}
				if !strings.Contains(err.Error(), "gallery version") {
					t.Errorf("error %q does not name the noun", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseVersion(%q): %v", tt.in, err)
			}
			if v.Major() != tt.m || v.Minor() != tt.n || v.Patch() != tt.p || v.String() != tt.in {
				t.Errorf("ParseVersion(%q) = %d.%d.%d (%s)", tt.in, v.Major(), v.Minor(), v.Patch(), v)
			}
		})
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means an error
	}{
		{"1.0", "1.0"},
		{"0.0", "0.0"},
		{"12.345", "12.345"},
		{"1", ""},
		{"1.0.0", ""},
		{"a.b", ""},
		{"", ""},
		{"01.0", ""},
		{"1.2147483648", ""},
		{"1.-1", ""},
	}
	for _, tt := range tests {
		l, err := ParseLine(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParseLine(%q) = %s, want an error", tt.in, l)
		case tt.want != "" && err != nil:
			t.Errorf("ParseLine(%q): %v", tt.in, err)
		case tt.want != "" && l.String() != tt.want:
			t.Errorf("ParseLine(%q) = %s, want %s", tt.in, l, tt.want)
		}
	}
}

func TestVersionCompareIsNumeric(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.0.10", "1.0.9", 1},
		{"1.0.9", "1.0.10", -1},
		{"1.10.0", "1.9.99", 1},
		{"2.0.0", "1.99.99", 1},
		{"1.0.0", "1.0.0", 0},
	}
	for _, tt := range tests {
		a, _ := ParseVersion(tt.a)
		b, _ := ParseVersion(tt.b)
		if got := a.Compare(b); got != tt.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	var zero Version
	if zero.String() != "0.0.0" {
		t.Errorf("zero Version = %s, want 0.0.0", zero)
	}
}

func TestSort(t *testing.T) {
	var versions []ImageVersion
	for _, n := range []string{"1.0.10", "2.0.0", "junk", "1.0.9", "1.10.0", "1.2.0", "1.0.0"} {
		versions = append(versions, ImageVersion{Name: n})
	}
	Sort(versions)
	var got []string
	for _, v := range versions {
		got = append(got, v.Name)
	}
	want := []string{"junk", "1.0.0", "1.0.9", "1.0.10", "1.2.0", "1.10.0", "2.0.0"}
	if !slices.Equal(got, want) {
		t.Errorf("Sort = %v, want %v", got, want)
	}
}

func TestNext(t *testing.T) {
	tests := []struct {
		name     string
		existing []string
		line     string
		want     string
		wantErr  bool
		logged   []string // names that must be reported as ignored
	}{
		{name: "empty", line: "1.0", want: "1.0.0"},
		{name: "numeric not lexicographic", existing: []string{"1.0.0", "1.0.1", "1.0.10", "1.0.9"}, line: "1.0", want: "1.0.11"},
		{name: "other lines ignored", existing: []string{"1.0.3", "1.1.7", "2.0.9", "0.9.99"}, line: "1.0", want: "1.0.4"},
		{name: "1.1 line", existing: []string{"1.0.3", "1.1.7", "1.1.2"}, line: "1.1", want: "1.1.8"},
		{name: "new line", existing: []string{"1.0.3", "1.1.7"}, line: "1.2", want: "1.2.0"},
		{name: "gap kept", existing: []string{"1.0.0", "1.0.5"}, line: "1.0", want: "1.0.6"},
		{
			name:     "garbage names ignored and reported",
			existing: []string{"1.0.2", "latest", "1.0.99-rc1", "v1.0.50", "1.0.07", "", "1.0.2147483648"},
			line:     "1.0", want: "1.0.3",
			logged: []string{"latest", "1.0.99-rc1", "v1.0.50", "1.0.07", "1.0.2147483648"},
		},
		{name: "patch at the int32 limit", existing: []string{"1.0.2147483647"}, line: "1.0", wantErr: true},
		{name: "line with one part", line: "1", wantErr: true},
		{name: "line with three parts", line: "1.0.0", wantErr: true},
		{name: "line not numeric", line: "a.b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			got, err := NextWithLogger(log, tt.existing, tt.line)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Next = %s, want an error", got)
				}
				if !strings.Contains(err.Error(), "gallery version") {
					t.Errorf("error %q does not name the noun", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Next(%v, %s) = %s, want %s", tt.existing, tt.line, got, tt.want)
			}
			for _, name := range tt.logged {
				if !strings.Contains(buf.String(), "name="+name+" ") && !strings.Contains(buf.String(), "name="+`"`+name+`"`) {
					t.Errorf("ignored name %q not reported; log:\n%s", name, buf.String())
				}
			}
			if len(tt.logged) == 0 && buf.Len() != 0 {
				t.Errorf("unexpected log output:\n%s", buf.String())
			}
		})
	}
}
