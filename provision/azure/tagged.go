package azure

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

// ResourceGroupsTagged lists the subscription's resource groups that carry
// the tag (any value), every page. A failed page fails the whole list: a
// partial list would read as "nothing else is there".
func (c *Clients) ResourceGroupsTagged(ctx context.Context, tag string) ([]*armresources.ResourceGroup, error) {
	pager := c.groups.NewListPager(&armresources.ResourceGroupsClientListOptions{Filter: to.Ptr(tagFilter(tag))})
	var out []*armresources.ResourceGroup
	for pager.More() {
		var page armresources.ResourceGroupsClientListResponse
		if err := c.call(ctx, "list resource groups tagged "+tag, func(ctx context.Context) error {
			var err error
			page, err = pager.NextPage(ctx)
			return err
		}); err != nil {
			return nil, err
		}
		out = append(out, page.Value...)
	}
	return out, nil
}

// ResourcesTagged lists the subscription's resources that carry the tag
// (any value), every page; like ResourceGroupsTagged, all or an error.
func (c *Clients) ResourcesTagged(ctx context.Context, tag string) ([]*armresources.GenericResourceExpanded, error) {
	pager := c.resources.NewListPager(&armresources.ClientListOptions{Filter: to.Ptr(tagFilter(tag))})
	var out []*armresources.GenericResourceExpanded
	for pager.More() {
		var page armresources.ClientListResponse
		if err := c.call(ctx, "list resources tagged "+tag, func(ctx context.Context) error {
			var err error
			page, err = pager.NextPage(ctx)
			return err
		}); err != nil {
			return nil, err
		}
		out = append(out, page.Value...)
	}
	return out, nil
}

// tagFilter is ARM's $filter for "has tag": tag names are imagebake's own
// constants, never user input, so quoting is not needed beyond the quotes.
func tagFilter(tag string) string { return "tagName eq '" + tag + "'" }
