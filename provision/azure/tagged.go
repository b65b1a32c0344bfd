package azure

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

// ResourceGroupsTagged lists the subscription's resource groups that carry
// the tag (any value), every page. A failed page fails the whole list: a
// partial list would read as "nothing else is there".
func (c *Clients) ResourceGroupsTagged(ctx context.Context, tag string) ([]*armresources.ResourceGroup, error) {
	pager := c.groups.NewListPager(&armresources.ResourceGroupsClientListOptions{Filter: to.Ptr(tagFilter(tag))})
	return allPages(ctx, c, "list resource groups tagged "+tag, pager, func(p armresources.ResourceGroupsClientListResponse) []*armresources.ResourceGroup { return p.Value })
}

// ResourcesTagged lists the subscription's resources that carry the tag
// (any value), every page; like ResourceGroupsTagged, all or an error.
func (c *Clients) ResourcesTagged(ctx context.Context, tag string) ([]*armresources.GenericResourceExpanded, error) {
	pager := c.resources.NewListPager(&armresources.ClientListOptions{Filter: to.Ptr(tagFilter(tag))})
	return allPages(ctx, c, "list resources tagged "+tag, pager, func(p armresources.ClientListResponse) []*armresources.GenericResourceExpanded { return p.Value })
}

// allPages reads every page of a list through the one transport (so each
// page's throttling is waited out and its error named once). A failed page
// fails the whole list: a partial list would read as "nothing else is there".
func allPages[P, T any](ctx context.Context, c *Clients, what string, pager *runtime.Pager[P], items func(P) []T) ([]T, error) {
	var out []T
	for pager.More() {
		var page P
		if err := c.call(ctx, what, func(ctx context.Context) error {
			var err error
			page, err = pager.NextPage(ctx)
			return err
		}); err != nil {
			return nil, err
		}
		out = append(out, items(page)...)
	}
	return out, nil
}

// tagFilter is ARM's $filter for "has tag": tag names are imagebake's own
// constants, never user input, so quoting is not needed beyond the quotes.
func tagFilter(tag string) string { return "tagName eq '" + tag + "'" }
