package gc

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/imagebake/imagebake/internal/contract"
	az "github.com/imagebake/imagebake/provision/azure"
)

// Tags a bake puts on what it creates (contract.Tag*).
const (
	TagBuildID = contract.TagBuildID
	TagCreated = contract.TagCreated
	TagRecipe  = contract.TagRecipe
)

// azureParallel bounds concurrent resource group deletions: each takes
// minutes, and too many at once only earns throttling.
const azureParallel = 4

// Azure plans (and with opts.Delete, carries out) the deletion of resource
// groups tagged imagebake.build-id whose imagebake.created is older than
// opts.TTL. Groups without the build-id tag are never listed, let alone
// touched; tagged groups without a readable creation time are kept.
func Azure(ctx context.Context, c *az.Clients, opts Options) ([]Item, error) {
	now := opts.now()
	// A failed list is an error, never an empty plan: "nothing of
	// imagebake's found" would be a lie.
	groups, err := c.ResourceGroupsTagged(ctx, TagBuildID)
	if err != nil {
		return nil, err
	}
	var items []Item
	for _, g := range groups {
		if it, ok := azureItem(g, opts.TTL, now); ok {
			items = append(items, it)
		}
	}
	loose, err := azureLooseResources(ctx, c, items, opts.TTL, now)
	if err != nil {
		return nil, err
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	items = append(items, loose...)
	if !opts.Delete {
		return items, nil
	}
	// Resources a build made in an existing group go first, in dependency
	// order (VM before its network), one at a time.
	for i := range items {
		it := &items[i]
		if it.Kind == "resource-group" || it.Action != ActionDelete {
			continue
		}
		if err := deleteLoose(ctx, c, it); err != nil {
			it.Error = err.Error()
			continue
		}
		it.Done = true
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, azureParallel)
	for i := range items {
		if items[i].Kind != "resource-group" || items[i].Action != ActionDelete {
			continue
		}
		wg.Add(1)
		go func(it *Item) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := c.DeleteResourceGroup(ctx, it.Name); err != nil {
				it.Error = err.Error()
				return
			}
			it.Done = true
		}(&items[i])
	}
	wg.Wait()
	return items, nil
}

// azureItem judges one listed group. ok is false for groups that lack the
// build-id tag after all (the filter is the server's; we check again).
func azureItem(g *armresources.ResourceGroup, ttl time.Duration, now time.Time) (Item, bool) {
	if g == nil || g.Name == nil {
		return Item{}, false
	}
	tags := map[string]string{}
	for k, v := range g.Tags {
		if v != nil {
			tags[strings.ToLower(k)] = *v
		}
	}
	buildID, tagged := tags[TagBuildID]
	if !tagged {
		return Item{}, false
	}
	it := Item{Kind: "resource-group", Name: *g.Name, Action: ActionKeep}
	created, err := time.Parse(time.RFC3339, tags[TagCreated])
	if err != nil {
		it.Reason = fmt.Sprintf("build %s: no readable %s tag (%q); delete it by hand if it is debris", buildID, TagCreated, tags[TagCreated])
		return it, true
	}
	it.Created, it.Age = created, age(now.Sub(created))
	if g.Properties != nil && g.Properties.ProvisioningState != nil && strings.EqualFold(*g.Properties.ProvisioningState, "Deleting") {
		it.Reason = "already being deleted"
		return it, true
	}
	recipe := tags[TagRecipe]
	if now.Sub(created) <= ttl {
		it.Reason = fmt.Sprintf("build %s of %s is younger than the TTL of %s (it may still be running)", buildID, dashIfEmpty(recipe), ttl)
		return it, true
	}
	it.Action = ActionDelete
	it.Reason = fmt.Sprintf("build %s of %s was created %s ago, more than the TTL of %s", buildID, dashIfEmpty(recipe), it.Age, ttl)
	return it, true
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// looseOrder is the order resources of one build are deleted in: what uses
// a thing goes before it.
var looseOrder = map[string]int{
	"microsoft.compute/virtualmachines":       0,
	"microsoft.compute/images":                1,
	"microsoft.network/virtualnetworks":       2,
	"microsoft.network/networksecuritygroups": 3,
}

// azureLooseResources finds resources tagged by a build outside the tagged
// groups listed: what a bake made in an existing --build-resource-group.
func azureLooseResources(ctx context.Context, c *az.Clients, groups []Item, ttl time.Duration, now time.Time) ([]Item, error) {
	inGroup := map[string]bool{}
	for _, g := range groups {
		inGroup[strings.ToLower(g.Name)] = true
	}
	resources, err := c.ResourcesTagged(ctx, TagBuildID)
	if err != nil {
		return nil, err
	}
	var items []Item
	for _, r := range resources {
		if r == nil || r.ID == nil || r.Type == nil {
			continue
		}
		rg := resourceGroupOf(*r.ID)
		if inGroup[strings.ToLower(rg)] {
			continue // the group goes whole
		}
		tags := map[string]string{}
		for k, v := range r.Tags {
			if v != nil {
				tags[strings.ToLower(k)] = *v
			}
		}
		if _, ok := tags[TagBuildID]; !ok {
			continue
		}
		it := Item{Kind: strings.ToLower(*r.Type), Name: *r.ID, Action: ActionKeep}
		created, err := time.Parse(time.RFC3339, tags[TagCreated])
		_, known := looseOrder[it.Kind]
		switch {
		case err != nil:
			it.Reason = "no readable " + TagCreated + " tag; delete it by hand if it is debris"
		case now.Sub(created) <= ttl:
			it.Created, it.Age = created, age(now.Sub(created))
			it.Reason = fmt.Sprintf("build %s is younger than the TTL of %s", tags[TagBuildID], ttl)
		case !known:
			it.Created, it.Age = created, age(now.Sub(created))
			it.Reason = "a build's " + *r.Type + " that imagebake does not delete by itself (it goes with its VM); delete it by hand if it remains"
		default:
			it.Created, it.Age = created, age(now.Sub(created))
			it.Action = ActionDelete
			it.Reason = fmt.Sprintf("build %s made it in group %s %s ago, more than the TTL of %s", tags[TagBuildID], rg, it.Age, ttl)
		}
		items = append(items, it)
	}
	sort.SliceStable(items, func(i, j int) bool { return looseOrder[items[i].Kind] < looseOrder[items[j].Kind] })
	return items, nil
}

func resourceGroupOf(id string) string {
	parts := strings.Split(id, "/")
	for i := 0; i+1 < len(parts); i++ {
		if strings.EqualFold(parts[i], "resourceGroups") {
			return parts[i+1]
		}
	}
	return ""
}

func lastSegment(id string) string {
	return id[strings.LastIndex(id, "/")+1:]
}

func deleteLoose(ctx context.Context, c *az.Clients, it *Item) error {
	rg, name := resourceGroupOf(it.Name), lastSegment(it.Name)
	switch it.Kind {
	case "microsoft.compute/virtualmachines":
		return c.DeleteVM(ctx, rg, name)
	case "microsoft.compute/images":
		return c.DeleteManagedImage(ctx, rg, name)
	case "microsoft.network/virtualnetworks":
		return c.DeleteVNet(ctx, rg, name)
	case "microsoft.network/networksecuritygroups":
		return c.DeleteNSG(ctx, rg, name)
	}
	return fmt.Errorf("%s: no delete for type %s", it.Name, it.Kind)
}
