package bake

import (
	"github.com/imagebake/imagebake/internal/contract"
)

// The five flows, each one declared list of stages over its build struct.
// This file answers "in what order does a bake run": nothing else decides
// the order. The README's Architecture section lists the same names (a test
// keeps them equal), and every name is one of contract.Stages, which is what
// recipes' build.timeouts are checked against.

// azureBakeStages bake a recipe on Azure (Azure).
var azureBakeStages = []Stage[azureBake]{
	{contract.StageCredentials, (*azureBake).credentials},
	{contract.StageBase, (*azureBake).resolveBase},
	{contract.StageVersion, (*azureBake).previewVersion},
	{contract.StageResourceGroup, (*azureBake).resourceGroup},
	{contract.StageNetwork, (*azureBake).network},
	{contract.StageVM, (*azureBake).createVM},
	{contract.StageSSH, (*azureBake).dial},
	{contract.StageCloudInit, (*azureBake).waitCloudInit},
	{contract.StageChecks, (*azureBake).runChecks},
	{contract.StageDeprovision, (*azureBake).deprovision},
	{contract.StageDeallocate, (*azureBake).deallocate},
	{contract.StageGeneralize, (*azureBake).generalize},
	{contract.StageImage, (*azureBake).managedImage},
	{contract.StagePublish, (*azureBake).publish},
}

// azureVerifyStages boot a published Azure version and check it (VerifyAzure).
var azureVerifyStages = []Stage[azureVerify]{
	{contract.StageCredentials, (*azureVerify).credentials},
	{contract.StageVersion, (*azureVerify).resolveVersion},
	{contract.StageResourceGroup, (*azureVerify).resourceGroup},
	{contract.StageNetwork, (*azureVerify).network},
	{contract.StageVM, (*azureVerify).createVM},
	{contract.StageSSH, (*azureVerify).dial},
	{contract.StageCloudInit, (*azureVerify).waitCloudInit},
	{contract.StageChecks, (*azureVerify).runChecks},
}

// localBakeStages bake a recipe under QEMU (Local).
var localBakeStages = []Stage[localBake]{
	{contract.StageBase, (*localBake).resolveBase},
	{contract.StageVersion, (*localBake).previewVersion},
	{contract.StageRender, (*localBake).render},
	{contract.StageBoot, (*localBake).boot},
	{contract.StageSSH, (*localBake).dial},
	{contract.StageCloudInit, (*localBake).cloudInit},
	{contract.StageChecks, (*localBake).runChecks},
	{contract.StageDeprovision, (*localBake).deprovision},
	{contract.StageCapture, (*localBake).capture},
	{contract.StagePublish, (*localBake).publish},
}

// localVerifyStages boot a published local version and check it (VerifyLocal).
var localVerifyStages = []Stage[localVerify]{
	{contract.StageBase, (*localVerify).resolveBase},
	{contract.StageBoot, (*localVerify).boot},
	{contract.StageSSH, (*localVerify).dial},
	{contract.StageCloudInit, (*localVerify).waitCloudInit},
	{contract.StageFirstBoot, (*localVerify).firstBoot},
	{contract.StageChecks, (*localVerify).runChecks},
	{contract.StageGeneralized, (*localVerify).generalized},
}

// localRuntimeStages boot a published runner image once per cycle value and
// watch each VM's lifecycle (VerifyRuntime).
var localRuntimeStages = []Stage[localRuntime]{
	{contract.StageBase, (*localRuntime).resolveBase},
	{contract.StagePlatform, (*localRuntime).startPlatform},
	{contract.StageLaunch, (*localRuntime).launch},
	{contract.StageLifecycle, (*localRuntime).lifecycle},
}

// Flow is one flow's name and its stages' names, in order.
type Flow struct {
	Name   string
	Stages []string
}

// Flows lists the five flows: what the README's Architecture section shows.
func Flows() []Flow {
	return []Flow{
		{"local bake", Names(localBakeStages)},
		{"local verify", Names(localVerifyStages)},
		{"local verify --runtime", Names(localRuntimeStages)},
		{"azure bake", Names(azureBakeStages)},
		{"azure verify", Names(azureVerifyStages)},
	}
}
