package gc

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
)

// A failing list is an error, never an empty plan that reads "nothing of
// imagebake's found".
func TestGCAzureFailingListIsAnError(t *testing.T) {
	for _, op := range []string{"ResourceGroups_List", "Resources_List"} {
		t.Run(op, func(t *testing.T) {
			e := aztest.New(t, azmodel.Options{}, nil)
			c := e.Clients(t)
			ctx := context.Background()
			if err := c.CreateResourceGroup(ctx, "imagebake-old-abc", "eastus", map[string]string{TagBuildID: "abc", TagCreated: time.Now().Add(-9 * time.Hour).UTC().Format(time.RFC3339)}); err != nil {
				t.Fatal(err)
			}
			e.Model.MustAddRule(azmodel.Rule{Op: op, Status: 403, Code: "AuthorizationFailed", Message: "The client 'client-1' does not have authorization to perform action 'read'."})
			items, err := Azure(ctx, c, Options{TTL: 6 * time.Hour, Delete: true})
			if err == nil {
				t.Fatalf("no error; items %+v", items)
			}
			if len(items) != 0 {
				t.Errorf("a failed list returned a partial plan: %+v", items)
			}
			if !strings.Contains(err.Error(), "tagged "+TagBuildID+": AuthorizationFailed: The client 'client-1'") || strings.Contains(err.Error(), "RESPONSE") {
				t.Errorf("error %q does not name the list and ARM's answer", err)
			}
			if !slices.Contains(groupNames(e), "imagebake-old-abc") {
				t.Error("gc deleted a group although its plan was incomplete")
			}
		})
	}
}

// A managed image made with --managed-image in an existing resource group
// carries imagebake.created (the bake passes only the build ID and recipe),
// so gc finds it once it is older than the TTL.
func TestGCAzureFindsAManagedImageInAnExistingGroup(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	c := e.Clients(t)
	ctx := context.Background()
	if err := c.CreateResourceGroup(ctx, "shared-builds", "eastus", nil); err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{TagBuildID: "kill1", TagRecipe: "demo"} // as bake tags the image
	n, err := c.CreateNetwork(ctx, "shared-builds", "eastus", "ib-kill1", []string{"*"}, tags)
	if err != nil {
		t.Fatal(err)
	}
	vmID, _, err := c.CreateVM(ctx, azVMSpec(t, n.SubnetID, tags))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Deallocate(ctx, "shared-builds", "ib-kill1-vm"); err != nil {
		t.Fatal(err)
	}
	if err := c.Generalize(ctx, "shared-builds", "ib-kill1-vm"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateManagedImage(ctx, "shared-builds", "ib-kill1-image", "eastus", vmID, "V1", tags); err != nil {
		t.Fatal(err)
	}
	// Young: kept.
	items, err := Azure(ctx, c, Options{TTL: 6 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Action == ActionDelete {
			t.Errorf("a young build's %s is planned for deletion", it.Name)
		}
	}
	// Later than the TTL: the image goes, after its VM, and the group stays.
	items, err = Azure(ctx, c, Options{TTL: 6 * time.Hour, Now: time.Now().Add(7 * time.Hour), Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, it := range items {
		if it.Action == ActionDelete && it.Done {
			deleted = append(deleted, it.Kind)
		}
	}
	want := []string{"microsoft.compute/virtualmachines", "microsoft.compute/images", "microsoft.network/virtualnetworks", "microsoft.network/networksecuritygroups"}
	if !slices.Equal(deleted, want) {
		t.Errorf("deleted %v, want %v (items %+v)", deleted, want, items)
	}
	for _, r := range e.Model.Resources() {
		if r.Name == "ib-kill1-image" {
			t.Error("the managed image is still there")
		}
	}
	if !slices.Contains(groupNames(e), "shared-builds") {
		t.Error("the existing group was deleted")
	}
}
