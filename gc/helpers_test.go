package gc

import (
	"testing"

	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/provision/sshsession"
	"github.com/imagebake/imagebake/templates"
)

// azVMSpec is a build VM like a bake's, with custom data that pins a host
// key (the model's stand-in guest needs one).
func azVMSpec(t *testing.T, subnetID string, tags map[string]string) az.VMSpec {
	priv, pub, _, err := sshsession.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	_, auth, err := sshsession.NewClientKey()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := templates.RenderAccess(templates.Options{HostKeyPrivate: priv, HostKeyPublic: pub})
	if err != nil {
		t.Fatal(err)
	}
	custom, err := templates.CustomData(&templates.Document{CloudConfig: cc})
	if err != nil {
		t.Fatal(err)
	}
	return az.VMSpec{ResourceGroup: "shared-builds", Name: "ib-kill1-vm", Location: "eastus", Size: "Standard_D2s_v3",
		Image:    az.Image{Publisher: "Canonical", Offer: "0001-com-ubuntu-server-focal", SKU: "20_04-lts", Version: "20.04.202502110"},
		SubnetID: subnetID, PublicIP: true, AdminUser: "imagebake", AuthorizedKey: auth, CustomData: custom, Tags: tags}
}
