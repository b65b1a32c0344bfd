package gc

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	az "github.com/imagebake/imagebake/provision/azure"
)

// Tags a bake puts on its temporary resource groups (see bake.BuildTag*).
const (
	TagBuildID = "imagebake.build-id"
	TagCreated = "imagebake.created"
	TagRecipe  = "imagebake.recipe"
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
	filter := "tagName eq '" + TagBuildID + "'"
	pager := c.Groups.NewListPager(&armresources.ResourceGroupsClientListOptions{Filter: to.Ptr(filter)})
	var items []Item
	for pager.More() {
		var page armresources.ResourceGroupsClientListResponse
		if err := c.Do(ctx, "list resource groups tagged "+TagBuildID, func(ctx context.Context) error {
			var err error
			page, err = pager.NextPage(ctx)
			return err
		}); err != nil {
			return items, err
		}
		for _, g := range page.Value {
			if it, ok := azureItem(g, opts.TTL, now); ok {
				items = append(items, it)
			}
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	if !opts.Delete {
		return items, nil
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, azureParallel)
	for i := range items {
		if items[i].Action != ActionDelete {
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
