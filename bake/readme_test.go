package bake

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's Architecture section lists each flow's stages; they must be
// the code's, in the code's order.
func TestReadmeStageListsMatchTheFlows(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section, ok := readmeSection(string(b), "## Architecture")
	if !ok {
		t.Fatal(`README.md has no "## Architecture" section`)
	}
	got := readmeFlows(section)
	for _, f := range Flows() {
		stages, ok := got[f.Name]
		if !ok {
			t.Errorf("README's Architecture table has no row for the %s flow", f.Name)
			continue
		}
		if !slices.Equal(stages, f.Stages) {
			t.Errorf("README lists the %s flow as\n  %s\nthe code runs\n  %s", f.Name, strings.Join(stages, " → "), strings.Join(f.Stages, " → "))
		}
		delete(got, f.Name)
	}
	for name := range got {
		t.Errorf("README lists a flow %q that the code does not have", name)
	}
}

func readmeSection(doc, heading string) (string, bool) {
	_, rest, ok := strings.Cut(doc, "\n"+heading+"\n")
	if !ok {
		return "", false
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest, true
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readmeFlows reads the flow table's rows: | flow | entry point | stages |.
func readmeFlows(section string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 3 || !strings.Contains(cells[2], "→") {
			continue
		}
		var stages []string
		for _, m := range backticked.FindAllStringSubmatch(cells[2], -1) {
			stages = append(stages, m[1])
		}
		out[strings.TrimSpace(cells[0])] = stages
	}
	return out
}

func TestReadmeFlowsParser(t *testing.T) {
	got := readmeFlows("| flow | entry | stages |\n| --- | --- | --- |\n| local verify | `bake.VerifyLocal` | `base` → `boot` |\n| pkg | job | no arrows |\n")
	if len(got) != 1 || !slices.Equal(got["local verify"], []string{"base", "boot"}) {
		t.Errorf("parsed %v", got)
	}
}
