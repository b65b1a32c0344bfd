package azmodel

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

var rgNameRE = regexp.MustCompile(`^[-\w._()]{1,90}$`)

func (m *Model) rgPut(c *call) *reply {
	var in armresources.ResourceGroup
	if rep := c.decode(&in); rep != nil {
		return rep
	}
	name := c.p[1]
	if !rgNameRE.MatchString(name) || strings.HasSuffix(name, ".") {
		return errReply(http.StatusBadRequest, "InvalidResourceGroupName", fmt.Sprintf("The resource group name '%s' is invalid. It can contain alphanumeric, underscore, parentheses, hyphen, period (except at end), and Unicode characters that match the allowed characters.", name))
	}
	if str(in.Location) == "" {
		return errReply(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	if rg := m.get(rgID(c.p[0], name)); rg != nil {
		obj := rg.obj.(*armresources.ResourceGroup)
		if rg.op != nil && rg.op.kind == OpRGDelete {
			return errReply(http.StatusConflict, "ResourceGroupBeingDeleted", fmt.Sprintf("The resource group '%s' is in deprovisioning state and cannot perform this operation.", rg.name))
		}
		if normLoc(str(obj.Location)) != normLoc(str(in.Location)) {
			return errReply(http.StatusConflict, "InvalidResourceGroupLocation", fmt.Sprintf("Invalid resource group location '%s'. The Resource group already exists in location '%s'.", str(in.Location), str(obj.Location)))
		}
		obj.Tags = in.Tags
		if in.ManagedBy != nil {
			obj.ManagedBy = in.ManagedBy
		}
		return jsonReply(http.StatusOK, obj)
	}
	id := rgID(c.p[0], name)
	obj := &armresources.ResourceGroup{
		ID:         ptr(id),
		Name:       ptr(name),
		Type:       ptr(TypeResourceGroup),
		Location:   ptr(normLoc(str(in.Location))),
		Tags:       in.Tags,
		ManagedBy:  in.ManagedBy,
		Properties: &armresources.ResourceGroupProperties{ProvisioningState: ptr(statusSucceeded)},
	}
	m.put(&res{id: id, typ: TypeResourceGroup, sub: c.p[0], rg: name, name: name, created: m.now(), obj: obj})
	return jsonReply(http.StatusCreated, obj)
}

func (m *Model) rgPatch(c *call) *reply {
	rg, rep := m.rgLocked(c, true)
	if rep != nil {
		return rep
	}
	var in armresources.ResourceGroupPatchable
	if rep := c.decode(&in); rep != nil {
		return rep
	}
	obj := rg.obj.(*armresources.ResourceGroup)
	if in.Tags != nil {
		obj.Tags = in.Tags
	}
	return jsonReply(http.StatusOK, obj)
}

func (m *Model) rgGet(c *call) *reply {
	rg, rep := m.rgLocked(c, false)
	if rep != nil {
		return rep
	}
	m.touchLocked(rg)
	if m.get(rg.id) == nil { // the touch finished its deletion
		return errReply(http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", c.p[1]))
	}
	return jsonReply(http.StatusOK, rg.obj)
}

func (m *Model) rgHead(c *call) *reply {
	if m.get(rgID(c.p[0], c.p[1])) == nil {
		return &reply{status: http.StatusNotFound}
	}
	return &reply{status: http.StatusNoContent}
}

func (m *Model) rgDelete(c *call) *reply {
	rg, rep := m.rgLocked(c, false)
	if rep != nil {
		return rep
	}
	if rg.op != nil && rg.op.kind == OpRGDelete {
		return m.lroHeaders(c, &reply{status: http.StatusAccepted}, rg.op, true)
	}
	obj := rg.obj.(*armresources.ResourceGroup)
	obj.Properties.ProvisioningState = ptr("Deleting")
	op := m.startOp(c, OpRGDelete, rg, styleRG, str(obj.Location))
	sub, name := rg.sub, rg.name
	op.onSuccess = func() {
		for _, r := range m.inGroup(sub, name) {
			m.removeLocked(r)
		}
		m.removeLocked(rg)
	}
	op.onFailure = func() { obj.Properties.ProvisioningState = ptr(statusSucceeded) }
	return m.lroHeaders(c, &reply{status: http.StatusAccepted}, op, true)
}

// removeLocked deletes r from the store, ends its pending operation and
// queues the OnVMDeleted hook for VMs.
func (m *Model) removeLocked(r *res) {
	if m.get(r.id) == nil {
		return
	}
	if r.op != nil && r.op.kind != OpRGDelete {
		m.preemptLocked(r.op)
	}
	delete(m.res, lowerID(r.id))
	if r.vm != nil && m.opts.OnVMDeleted != nil {
		info := r.vm.info.clone(tagsOf(r.obj))
		hook := m.opts.OnVMDeleted
		m.later(func() { hook(info) })
	}
}

var tagFilterRE = regexp.MustCompile(`(?i)^\s*tagname\s+eq\s+'([^']*)'(?:\s+and\s+tagvalue\s+eq\s+'([^']*)')?\s*$`)

// tagFilter parses ARM's $filter=tagName eq 'k' [and tagValue eq 'v'].
func tagFilter(f string) (name, value string, hasValue bool, ok bool) {
	if strings.TrimSpace(f) == "" {
		return "", "", false, true
	}
	mm := tagFilterRE.FindStringSubmatch(f)
	if mm == nil {
		return "", "", false, false
	}
	return mm[1], mm[2], strings.Contains(strings.ToLower(f), "tagvalue"), true
}

func tagsMatch(tags map[string]*string, name, value string, hasValue bool) bool {
	if name == "" {
		return true
	}
	for k, v := range tags {
		if strings.EqualFold(k, name) && (!hasValue || str(v) == value) {
			return true
		}
	}
	return false
}

func badFilter(f string) *reply {
	return errReply(http.StatusBadRequest, "InvalidFilterInQueryString", fmt.Sprintf("Invalid $filter '%s' specified in the query string.", f))
}

func (m *Model) rgList(c *call) *reply {
	f := c.q.Get("$filter")
	name, value, hasValue, ok := tagFilter(f)
	if !ok {
		return badFilter(f)
	}
	var items []any
	for _, r := range m.ofType(c.p[0], "", TypeResourceGroup) {
		if tagsMatch(tagsOf(r.obj), name, value, hasValue) {
			items = append(items, r.obj)
		}
	}
	return m.pageReply(c, items)
}

func (m *Model) resListRG(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	return m.resList(c, m.inGroup(c.p[0], c.p[1]))
}

func (m *Model) resListSub(c *call) *reply {
	var all []*res
	for _, r := range m.res {
		if strings.EqualFold(r.sub, c.p[0]) && r.typ != TypeResourceGroup {
			all = append(all, r)
		}
	}
	sortRes(all)
	return m.resList(c, all)
}

var typeFilterRE = regexp.MustCompile(`(?i)^\s*resourcetype\s+eq\s+'([^']*)'\s*$`)

// resList answers Resources_List*: tracked resources (not subnets), filtered
// by tag or resource type.
func (m *Model) resList(c *call, rs []*res) *reply {
	f := c.q.Get("$filter")
	name, value, hasValue, ok := tagFilter(f)
	typ := ""
	if !ok {
		mm := typeFilterRE.FindStringSubmatch(f)
		if mm == nil {
			return badFilter(f)
		}
		typ = mm[1]
	}
	expandState := c.wantsExpand("provisioningState")
	var items []any
	for _, r := range rs {
		if r.typ == TypeSubnet {
			continue
		}
		if typ != "" && !strings.EqualFold(r.typ, typ) {
			continue
		}
		if !tagsMatch(tagsOf(r.obj), name, value, hasValue) {
			continue
		}
		g := &armresources.GenericResourceExpanded{
			ID:       ptr(r.id),
			Name:     ptr(armName(r.id)),
			Type:     ptr(r.typ),
			Location: ptr(locationOf(r.obj)),
			Tags:     tagsOf(r.obj),
		}
		if expandState {
			g.ProvisioningState = ptr(provisioningStateOf(r.obj))
		}
		items = append(items, g)
	}
	return m.pageReply(c, items)
}

// armName is the name ARM lists for a resource: nested resources join their
// names with "/" ("gallery/image/1.0.0").
func armName(id string) string {
	i := strings.Index(strings.ToLower(id), "/providers/")
	if i < 0 {
		return id[strings.LastIndex(id, "/")+1:]
	}
	segs := strings.Split(id[i+len("/providers/"):], "/")
	var names []string
	for j := 2; j < len(segs); j += 2 {
		names = append(names, segs[j])
	}
	return strings.Join(names, "/")
}
