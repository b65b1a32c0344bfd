package platform

import (
	"context"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
)

// staticToken hands the SDK a token the platform's IMDS minted.
type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestComputeSDKAgainstThePlatform drives the platform's Resource Manager
// with armcompute v7, the client imagebake uses on Azure: its pollers must
// follow the 202's Azure-AsyncOperation and Location to completion.
func TestComputeSDKAgainstThePlatform(t *testing.T) {
	f := newFixture(t, Config{})
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: "https://management.azure.com", Audience: "https://management.azure.com/"},
		}},
		Transport: httpsClient(t, f.p),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}}
	client, err := armcompute.NewVirtualMachinesClient(f.p.SubscriptionID(), staticToken(token(t, f.a, armRes)), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	poll := &runtime.PollUntilDoneOptions{Frequency: 50 * time.Millisecond}

	got, err := client.Get(ctx, "rg", "vm-a", &armcompute.VirtualMachinesClientGetOptions{Expand: to.Ptr(armcompute.InstanceViewTypesUserData)})
	if err != nil {
		t.Fatal(err)
	}
	if *got.Name != "vm-a" || *got.Properties.UserData != "aml0LWNvbmZpZy1h" || *got.Tags["cycle"] != "delete" {
		t.Errorf("get: %+v", got.VirtualMachine)
	}
	up, err := client.BeginUpdate(ctx, "rg", "vm-a", armcompute.VirtualMachineUpdate{Tags: map[string]*string{"cycle": to.Ptr("delete"), "outcome": to.Ptr("job-done")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
	if f.a.Status().Outcome != "job-done" {
		t.Errorf("outcome %q", f.a.Status().Outcome)
	}
	dp, err := client.BeginDeallocate(ctx, "rg", "vm-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
	if st := f.a.Status().State; st != StateDeallocated {
		t.Errorf("after deallocate: %s", st)
	}
	del, err := client.BeginDelete(ctx, "rg", "vm-a", &armcompute.VirtualMachinesClientBeginDeleteOptions{ForceDeletion: to.Ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := del.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
	if st := f.a.Status().State; st != StateDeleted {
		t.Errorf("after delete: %s", st)
	}
	// The same client with A's token may not touch B.
	if _, err := client.BeginDeallocate(ctx, "rg", "vm-b", nil); err == nil {
		t.Error("A's token deallocated B")
	} else if re, ok := err.(*azcore.ResponseError); !ok || re.StatusCode != 403 || re.ErrorCode != "AuthorizationFailed" {
		t.Errorf("want 403 AuthorizationFailed, got %v", err)
	}
}
