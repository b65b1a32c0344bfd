package azmodel

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

const netProvider = "Microsoft.Network"

func netState(s string) *armnetwork.ProvisioningState { return ptr(armnetwork.ProvisioningState(s)) }

func etag() *string { return ptr(`W/"` + newGUID() + `"`) }

// busyNet is Network's answer while another operation runs on a resource
// (message shape unverified).
func busyNet(c *call, r *res) *reply {
	async, _ := r.op.urls(c.base)
	return errReply(http.StatusConflict, "AnotherOperationInProgress", fmt.Sprintf(
		"Another operation on this or dependent resource is in progress. To retrieve status of the operation use uri: %s.", async))
}

// netWrite starts a network write operation on r and answers 201/200 with
// Azure-AsyncOperation, as Network does.
func (m *Model) netWrite(c *call, r *res, created bool, setState func(string), render func() any) *reply {
	setState("Updating")
	op := m.startOp(c, OpNetworkWrite, r, styleNetwork, locationOf(r.obj))
	op.onSuccess = func() { setState(statusSucceeded) }
	op.onFailure = func() { setState(statusFailed) }
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return m.lroHeaders(c, jsonReply(status, render()), op, false)
}

// netDelete starts a network delete operation on r and answers 202 with
// Azure-AsyncOperation and Location.
func (m *Model) netDelete(c *call, r *res, setState func(string), remove func()) *reply {
	prev := provisioningStateOf(r.obj)
	setState("Deleting")
	op := m.startOp(c, OpNetworkDelete, r, styleNetwork, locationOf(r.obj))
	op.onSuccess = remove
	op.onFailure = func() { setState(prev) }
	return m.lroHeaders(c, &reply{status: http.StatusAccepted}, op, true)
}

// ---- virtual networks and subnets ----

func vnetID(c *call) string {
	return provID(c.p[0], c.p[1], netProvider, "virtualNetworks/"+c.p[2])
}

func (m *Model) vnetPut(c *call) *reply {
	if _, rep := m.rgLocked(c, true); rep != nil {
		return rep
	}
	var in armnetwork.VirtualNetwork
	if rep := c.decode(&in); rep != nil {
		return rep
	}
	if str(in.Location) == "" {
		return errReply(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	id := vnetID(c)
	r := m.get(id)
	created := r == nil
	if r != nil && r.op != nil {
		return busyNet(c, r)
	}
	var want []*armnetwork.Subnet
	props := in.Properties
	if props == nil {
		props = &armnetwork.VirtualNetworkPropertiesFormat{}
	}
	want, props.Subnets = props.Subnets, nil
	if !created {
		// A PUT replaces the subnet list: subnets left out are deleted,
		// which Network refuses while they are in use.
		keep := map[string]bool{}
		for _, s := range want {
			keep[strings.ToLower(str(s.Name))] = true
		}
		for _, s := range m.children(id) {
			if !keep[strings.ToLower(s.name)] {
				if users := m.subnetUsers(s.id); len(users) > 0 {
					return inUseSubnet(s.name, users[0])
				}
			}
		}
		for _, s := range m.children(id) {
			if !keep[strings.ToLower(s.name)] {
				m.removeLocked(s)
			}
		}
	}
	for _, s := range want {
		if s.Properties != nil && s.Properties.NetworkSecurityGroup != nil {
			if rep := m.refExists(str(s.Properties.NetworkSecurityGroup.ID), id); rep != nil {
				return rep
			}
		}
	}
	obj := &armnetwork.VirtualNetwork{
		ID:         ptr(id),
		Name:       ptr(c.p[2]),
		Type:       ptr(TypeVirtualNetwork),
		Location:   ptr(normLoc(str(in.Location))),
		Tags:       in.Tags,
		Etag:       etag(),
		Properties: props,
	}
	if created {
		props.ResourceGUID = ptr(newGUID())
		r = &res{id: id, typ: TypeVirtualNetwork, sub: c.p[0], rg: c.p[1], name: c.p[2], created: m.now(), obj: obj}
		m.put(r)
	} else {
		old := r.obj.(*armnetwork.VirtualNetwork)
		props.ResourceGUID = old.Properties.ResourceGUID
		r.obj = obj
	}
	for _, s := range want {
		m.upsertSubnet(r, s)
	}
	return m.netWrite(c, r, created, func(s string) { obj.Properties.ProvisioningState = netState(s) }, func() any { return m.renderVNet(r) })
}

// upsertSubnet stores subnet s of vnet (created or updated in place).
func (m *Model) upsertSubnet(vnet *res, s *armnetwork.Subnet) *res {
	name := str(s.Name)
	id := vnet.id + "/subnets/" + name
	props := s.Properties
	if props == nil {
		props = &armnetwork.SubnetPropertiesFormat{}
	}
	props.IPConfigurations = nil
	if props.NetworkSecurityGroup != nil {
		props.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: props.NetworkSecurityGroup.ID}
	}
	props.ProvisioningState = netState(statusSucceeded)
	obj := &armnetwork.Subnet{ID: ptr(id), Name: ptr(name), Type: ptr(TypeSubnet), Etag: etag(), Properties: props}
	if r := m.get(id); r != nil {
		r.obj = obj
		return r
	}
	r := &res{id: id, typ: TypeSubnet, sub: vnet.sub, rg: vnet.rg, name: name, parent: lowerID(vnet.id), created: m.now(), obj: obj}
	m.put(r)
	return r
}

func (m *Model) renderVNet(r *res) any {
	in := r.obj.(*armnetwork.VirtualNetwork)
	out := *in
	props := *in.Properties
	props.Subnets = []*armnetwork.Subnet{}
	for _, s := range m.children(r.id) {
		props.Subnets = append(props.Subnets, m.renderSubnet(s))
	}
	out.Properties = &props
	return &out
}

func (m *Model) renderSubnet(r *res) *armnetwork.Subnet {
	in := r.obj.(*armnetwork.Subnet)
	out := *in
	props := *in.Properties
	props.IPConfigurations = nil
	for _, u := range m.subnetUsers(r.id) {
		props.IPConfigurations = append(props.IPConfigurations, &armnetwork.IPConfiguration{ID: ptr(u)})
	}
	out.Properties = &props
	return &out
}

// subnetUsers lists the NIC IP configuration IDs placed in a subnet.
func (m *Model) subnetUsers(subnetID string) []string {
	var out []string
	for _, nic := range m.ofTypeAll(TypeNetworkInterface) {
		for _, ipc := range nic.obj.(*armnetwork.Interface).Properties.IPConfigurations {
			if ipc.Properties != nil && ipc.Properties.Subnet != nil && strings.EqualFold(str(ipc.Properties.Subnet.ID), subnetID) {
				out = append(out, str(ipc.ID))
			}
		}
	}
	return out
}

func (m *Model) ofTypeAll(typ string) []*res {
	var out []*res
	for _, r := range m.res {
		if r.typ == typ {
			out = append(out, r)
		}
	}
	sortRes(out)
	return out
}

func inUseSubnet(name, user string) *reply {
	return errReply(http.StatusBadRequest, "InUseSubnetCannotBeDeleted", fmt.Sprintf(
		"Subnet %s is in use by %s and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet. See aka.ms/deletesubnet.", name, user))
}

// refExists answers 400 InvalidResourceReference when a referenced resource
// is missing, as Network does.
func (m *Model) refExists(ref, referrer string) *reply {
	if ref != "" && m.get(ref) != nil {
		return nil
	}
	return errReply(http.StatusBadRequest, "InvalidResourceReference", fmt.Sprintf(
		"Resource %s referenced by resource %s was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.", ref, referrer))
}

func (m *Model) vnetGet(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(vnetID(c))
	if r == nil {
		return notFound("Microsoft.Network/virtualNetworks/"+c.p[2], c.p[1])
	}
	m.touchLocked(r)
	return jsonReply(http.StatusOK, m.renderVNet(r))
}

func (m *Model) vnetList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	var items []any
	for _, r := range m.ofType(c.p[0], c.p[1], TypeVirtualNetwork) {
		items = append(items, m.renderVNet(r))
	}
	return m.pageReply(c, items)
}

func (m *Model) vnetDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(vnetID(c))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	if r.op != nil && r.op.kind == OpNetworkDelete {
		return m.lroHeaders(c, &reply{status: http.StatusAccepted}, r.op, true)
	}
	for _, s := range m.children(r.id) {
		if users := m.subnetUsers(s.id); len(users) > 0 {
			return inUseSubnet(s.name, users[0])
		}
	}
	obj := r.obj.(*armnetwork.VirtualNetwork)
	return m.netDelete(c, r, func(s string) { obj.Properties.ProvisioningState = netState(s) }, func() {
		for _, s := range m.children(r.id) {
			m.removeLocked(s)
		}
		m.removeLocked(r)
	})
}

func subnetID(c *call) string { return vnetID(c) + "/subnets/" + c.p[3] }

func subnetNotFound(id string) *reply {
	return errReply(http.StatusNotFound, "NotFound", fmt.Sprintf("Resource %s not found.", id))
}

func (m *Model) subnetPut(c *call) *reply {
	if _, rep := m.rgLocked(c, true); rep != nil {
		return rep
	}
	vnet := m.get(vnetID(c))
	if vnet == nil {
		return parentNotFound("write", "virtualNetworks/subnets", vnetID(c))
	}
	var in armnetwork.Subnet
	if rep := c.decode(&in); rep != nil {
		return rep
	}
	in.Name = ptr(c.p[3])
	if in.Properties != nil && in.Properties.NetworkSecurityGroup != nil {
		if rep := m.refExists(str(in.Properties.NetworkSecurityGroup.ID), subnetID(c)); rep != nil {
			return rep
		}
	}
	if old := m.get(subnetID(c)); old != nil && old.op != nil {
		return busyNet(c, old)
	}
	created := m.get(subnetID(c)) == nil
	r := m.upsertSubnet(vnet, &in)
	obj := r.obj.(*armnetwork.Subnet)
	return m.netWrite(c, r, created, func(s string) { obj.Properties.ProvisioningState = netState(s) }, func() any { return m.renderSubnet(r) })
}

func (m *Model) subnetGet(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	if m.get(vnetID(c)) == nil {
		return notFound("Microsoft.Network/virtualNetworks/"+c.p[2], c.p[1])
	}
	r := m.get(subnetID(c))
	if r == nil {
		return subnetNotFound(subnetID(c))
	}
	m.touchLocked(r)
	return jsonReply(http.StatusOK, m.renderSubnet(r))
}

func (m *Model) subnetList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	vnet := m.get(vnetID(c))
	if vnet == nil {
		return notFound("Microsoft.Network/virtualNetworks/"+c.p[2], c.p[1])
	}
	var items []any
	for _, s := range m.children(vnet.id) {
		items = append(items, m.renderSubnet(s))
	}
	return m.pageReply(c, items)
}

func (m *Model) subnetDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(subnetID(c))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	if users := m.subnetUsers(r.id); len(users) > 0 {
		return inUseSubnet(r.name, users[0])
	}
	obj := r.obj.(*armnetwork.Subnet)
	return m.netDelete(c, r, func(s string) { obj.Properties.ProvisioningState = netState(s) }, func() { m.removeLocked(r) })
}

// nextPrivateIP hands out the next address of a subnet; Azure reserves the
// first four, so the first NIC gets .4.
func (m *Model) nextPrivateIP(subnet *res) string {
	obj := subnet.obj.(*armnetwork.Subnet)
	prefix := str(obj.Properties.AddressPrefix)
	if prefix == "" && len(obj.Properties.AddressPrefixes) > 0 {
		prefix = str(obj.Properties.AddressPrefixes[0])
	}
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		p = netip.MustParsePrefix("10.0.0.0/24")
	}
	used := map[string]bool{}
	for _, nic := range m.ofTypeAll(TypeNetworkInterface) {
		for _, ipc := range nic.obj.(*armnetwork.Interface).Properties.IPConfigurations {
			used[str(ipc.Properties.PrivateIPAddress)] = true
		}
	}
	a := p.Masked().Addr()
	for i := 0; i < 4; i++ {
		a = a.Next()
	}
	for ; p.Contains(a); a = a.Next() {
		if !used[a.String()] {
			return a.String()
		}
	}
	return ""
}

// ---- network security groups ----

func nsgID(c *call) string {
	return provID(c.p[0], c.p[1], netProvider, "networkSecurityGroups/"+c.p[2])
}

func defaultSecurityRules(id string) []*armnetwork.SecurityRule {
	mk := func(name, dir, access, src, dst string, prio int32, desc string) *armnetwork.SecurityRule {
		d := armnetwork.SecurityRuleDirection(dir)
		a := armnetwork.SecurityRuleAccess(access)
		p := armnetwork.SecurityRuleProtocolAsterisk
		return &armnetwork.SecurityRule{
			ID:   ptr(id + "/defaultSecurityRules/" + name),
			Name: ptr(name),
			Type: ptr("Microsoft.Network/networkSecurityGroups/defaultSecurityRules"),
			Properties: &armnetwork.SecurityRulePropertiesFormat{
				Description: ptr(desc), Protocol: &p, SourcePortRange: ptr("*"), DestinationPortRange: ptr("*"),
				SourceAddressPrefix: ptr(src), DestinationAddressPrefix: ptr(dst), Access: &a, Priority: ptr(prio), Direction: &d,
				ProvisioningState: netState(statusSucceeded),
			},
		}
	}
	return []*armnetwork.SecurityRule{
		mk("AllowVnetInBound", "Inbound", "Allow", "VirtualNetwork", "VirtualNetwork", 65000, "Allow inbound traffic from all VMs in VNET"),
		mk("AllowAzureLoadBalancerInBound", "Inbound", "Allow", "AzureLoadBalancer", "*", 65001, "Allow inbound traffic from azure load balancer"),
		mk("DenyAllInBound", "Inbound", "Deny", "*", "*", 65500, "Deny all inbound traffic"),
		mk("AllowVnetOutBound", "Outbound", "Allow", "VirtualNetwork", "VirtualNetwork", 65000, "Allow outbound traffic from all VMs to all VMs in VNET"),
		mk("AllowInternetOutBound", "Outbound", "Allow", "*", "Internet", 65001, "Allow outbound traffic from all VMs to Internet"),
		mk("DenyAllOutBound", "Outbound", "Deny", "*", "*", 65500, "Deny all outbound traffic"),
	}
}

func (m *Model) nsgPut(c *call) *reply {
	if _, rep := m.rgLocked(c, true); rep != nil {
		return rep
	}
	var in armnetwork.SecurityGroup
	if rep := c.decode(&in); rep != nil {
		return rep
	}
	if str(in.Location) == "" {
		return errReply(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	id := nsgID(c)
	r := m.get(id)
	if r != nil && r.op != nil {
		return busyNet(c, r)
	}
	created := r == nil
	props := in.Properties
	if props == nil {
		props = &armnetwork.SecurityGroupPropertiesFormat{}
	}
	for _, sr := range props.SecurityRules {
		sr.ID = ptr(id + "/securityRules/" + str(sr.Name))
		sr.Type = ptr("Microsoft.Network/networkSecurityGroups/securityRules")
		if sr.Properties != nil {
			sr.Properties.ProvisioningState = netState(statusSucceeded)
		}
	}
	if props.SecurityRules == nil {
		props.SecurityRules = []*armnetwork.SecurityRule{}
	}
	props.DefaultSecurityRules = defaultSecurityRules(id)
	props.NetworkInterfaces, props.Subnets = nil, nil
	obj := &armnetwork.SecurityGroup{ID: ptr(id), Name: ptr(c.p[2]), Type: ptr(TypeNetworkSecurityGroup), Location: ptr(normLoc(str(in.Location))), Tags: in.Tags, Etag: etag(), Properties: props}
	if created {
		props.ResourceGUID = ptr(newGUID())
		r = &res{id: id, typ: TypeNetworkSecurityGroup, sub: c.p[0], rg: c.p[1], name: c.p[2], created: m.now(), obj: obj}
		m.put(r)
	} else {
		props.ResourceGUID = r.obj.(*armnetwork.SecurityGroup).Properties.ResourceGUID
		r.obj = obj
	}
	// The rules follow the group: "Updating" in the PUT answer, as recorded.
	setState := func(s string) {
		obj.Properties.ProvisioningState = netState(s)
		for _, sr := range append(append([]*armnetwork.SecurityRule(nil), props.SecurityRules...), props.DefaultSecurityRules...) {
			if sr.Properties != nil {
				sr.Properties.ProvisioningState = netState(s)
			}
		}
	}
	return m.netWrite(c, r, created, setState, func() any { return m.renderNSG(r) })
}

// nsgUsers lists the NICs and subnets associated with an NSG.
func (m *Model) nsgUsers(id string) (nics, subnets []string) {
	for _, n := range m.ofTypeAll(TypeNetworkInterface) {
		p := n.obj.(*armnetwork.Interface).Properties
		if p.NetworkSecurityGroup != nil && strings.EqualFold(str(p.NetworkSecurityGroup.ID), id) {
			nics = append(nics, n.id)
		}
	}
	for _, s := range m.ofTypeAll(TypeSubnet) {
		p := s.obj.(*armnetwork.Subnet).Properties
		if p.NetworkSecurityGroup != nil && strings.EqualFold(str(p.NetworkSecurityGroup.ID), id) {
			subnets = append(subnets, s.id)
		}
	}
	return nics, subnets
}

func (m *Model) renderNSG(r *res) any {
	in := r.obj.(*armnetwork.SecurityGroup)
	out := *in
	props := *in.Properties
	nics, subnets := m.nsgUsers(r.id)
	for _, n := range nics {
		props.NetworkInterfaces = append(props.NetworkInterfaces, &armnetwork.Interface{ID: ptr(n)})
	}
	for _, s := range subnets {
		props.Subnets = append(props.Subnets, &armnetwork.Subnet{ID: ptr(s)})
	}
	out.Properties = &props
	return &out
}

func (m *Model) nsgGet(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(nsgID(c))
	if r == nil {
		return notFound("Microsoft.Network/networkSecurityGroups/"+c.p[2], c.p[1])
	}
	m.touchLocked(r)
	return jsonReply(http.StatusOK, m.renderNSG(r))
}

func (m *Model) nsgList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	var items []any
	for _, r := range m.ofType(c.p[0], c.p[1], TypeNetworkSecurityGroup) {
		items = append(items, m.renderNSG(r))
	}
	return m.pageReply(c, items)
}

func (m *Model) nsgDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(nsgID(c))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	if nics, subnets := m.nsgUsers(r.id); len(nics)+len(subnets) > 0 {
		return errReply(http.StatusBadRequest, "InUseNetworkSecurityGroupCannotBeDeleted", fmt.Sprintf(
			"Network security group %s cannot be deleted because it is in use by the following resources: %s. In order to delete the Network security group, remove the association with the resource(s). To learn how to do this, see aka.ms/deletensg.",
			r.id, strings.Join(append(nics, subnets...), ", ")))
	}
	obj := r.obj.(*armnetwork.SecurityGroup)
	return m.netDelete(c, r, func(s string) { obj.Properties.ProvisioningState = netState(s) }, func() { m.removeLocked(r) })
}

// ---- public IP addresses ----

func pipID(c *call) string {
	return provID(c.p[0], c.p[1], netProvider, "publicIPAddresses/"+c.p[2])
}

// pipUser returns the NIC IP configuration a public IP is attached to.
func (m *Model) pipUser(id string) string {
	for _, n := range m.ofTypeAll(TypeNetworkInterface) {
		for _, ipc := range n.obj.(*armnetwork.Interface).Properties.IPConfigurations {
			if ipc.Properties.PublicIPAddress != nil && strings.EqualFold(str(ipc.Properties.PublicIPAddress.ID), id) {
				return str(ipc.ID)
			}
		}
	}
	return ""
}

func (m *Model) renderPIP(r *res) any {
	in := r.obj.(*armnetwork.PublicIPAddress)
	out := *in
	props := *in.Properties
	props.IPConfiguration = nil
	if u := m.pipUser(r.id); u != "" {
		props.IPConfiguration = &armnetwork.IPConfiguration{ID: ptr(u)}
	}
	out.Properties = &props
	return &out
}

func (m *Model) pipGet(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(pipID(c))
	if r == nil {
		return notFound("Microsoft.Network/publicIPAddresses/"+c.p[2], c.p[1])
	}
	m.touchLocked(r)
	return jsonReply(http.StatusOK, m.renderPIP(r))
}

func (m *Model) pipList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	var items []any
	for _, r := range m.ofType(c.p[0], c.p[1], TypePublicIPAddress) {
		items = append(items, m.renderPIP(r))
	}
	return m.pageReply(c, items)
}

func (m *Model) pipDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(pipID(c))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	if u := m.pipUser(r.id); u != "" {
		return errReply(http.StatusBadRequest, "PublicIPAddressCannotBeDeleted", fmt.Sprintf(
			"Public IP address %s can not be deleted since it is still allocated to resource %s. In order to delete the public IP, disassociate/detach the Public IP address from the resource.  To learn how to do this, see aka.ms/deletepublicip.", r.id, u))
	}
	obj := r.obj.(*armnetwork.PublicIPAddress)
	return m.netDelete(c, r, func(s string) { obj.Properties.ProvisioningState = netState(s) }, func() { m.removeLocked(r) })
}

// ---- network interfaces ----

func nicID(c *call) string {
	return provID(c.p[0], c.p[1], netProvider, "networkInterfaces/"+c.p[2])
}

func (m *Model) nicGet(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(nicID(c))
	if r == nil {
		return notFound("Microsoft.Network/networkInterfaces/"+c.p[2], c.p[1])
	}
	m.touchLocked(r)
	return jsonReply(http.StatusOK, r.obj)
}

func (m *Model) nicList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	var items []any
	for _, r := range m.ofType(c.p[0], c.p[1], TypeNetworkInterface) {
		items = append(items, r.obj)
	}
	return m.pageReply(c, items)
}

func nicInUse(nic, vm string) *reply {
	return errReply(http.StatusBadRequest, "NicInUse", fmt.Sprintf(
		"Network Interface %s is used by existing resource %s. In order to delete the network interface, it must be dissociated from the resource. To learn more, see aka.ms/deletenic.", nic, vm))
}

func (m *Model) nicDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(nicID(c))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	obj := r.obj.(*armnetwork.Interface)
	if obj.Properties.VirtualMachine != nil {
		return nicInUse(r.id, str(obj.Properties.VirtualMachine.ID))
	}
	return m.netDelete(c, r, func(s string) { obj.Properties.ProvisioningState = netState(s) }, func() { m.removeLocked(r) })
}
