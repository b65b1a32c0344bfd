// Package azmodel is a stateful, in-memory model of the parts of Azure
// Resource Manager that imagebake drives, served over HTTPS on 127.0.0.1 so
// the real Azure SDK pipeline (retries, Retry-After, long-running-operation
// polling, azidentity) and the real imagebake binary run against it.
//
// # Use
//
//	m := azmodel.New(azmodel.Options{OnVMCreated: playGuest})
//	srv := azmodel.NewServer(m, azmodel.ServerOptions{})
//	if err := srv.Start(); err != nil { … }
//	defer srv.Close()
//	cred, _ := srv.Credential(tenantID, clientID, secret) // real ClientSecretCredential
//	vms, _ := armcompute.NewVirtualMachinesClient(azmodel.DefaultSubscriptionID, cred, srv.ClientOptions())
//
// In tests, poll with runtime.PollUntilDoneOptions{Frequency: 10 * time.Millisecond}.
// Another process trusts the server through SSL_CERT_FILE (CACertPEM) and
// must set DisableInstanceDiscovery: MSAL sends instance discovery for a
// non-Microsoft authority to login.microsoftonline.com.
//
// # Served operations (api-versions as armcompute v7.3.0, armnetwork v7.2.0 and armresources v1.2.0 send them)
//
//   - Entra: GET /{tenant}/v2.0/.well-known/openid-configuration, POST /{tenant}/oauth2/v2.0/token.
//     Every other request needs "Authorization: Bearer <issued token>" (401 otherwise).
//   - Resources (2021-04-01): resource groups PUT, PATCH, GET, HEAD, DELETE (202 + Location,
//     deletes everything inside), list with $filter=tagName eq 'k' [and tagValue eq 'v'];
//     resources list per group and per subscription.
//   - Network (2025-01-01): virtual networks and subnets PUT/GET/DELETE/list, network security
//     groups PUT/GET/DELETE/list, public IPs and NICs GET/DELETE/list.
//   - Compute (2025-04-01): virtual machines PUT/GET ($expand=instanceView|userData)/DELETE
//     (forceDeletion)/list, instanceView, deallocate, powerOff, start, restart, generalize;
//     images PUT/GET/DELETE/list; VirtualMachineImages List/Get. Disks (2025-01-02) GET/DELETE/list.
//   - Galleries (2025-03-03): galleries and image definitions PUT/GET/DELETE/list; versions
//     PUT (If-None-Match: *)/GET ($expand=ReplicationStatus)/PATCH/DELETE/list.
//   - Operation status URLs handed out in Azure-AsyncOperation and Location headers.
//
// Lists page with nextLink ($skiptoken) at Options.PageSize items.
//
// # State rules
//
// Long-running operations answer 201/202 with Azure-AsyncOperation (and
// Location for POST actions and deletes; Location only for resource-group
// deletes); the resource shows Creating/Updating/Deleting until the operation
// has answered InProgress Options.InProgressPolls times (a GET of the resource
// counts) and its latency-profile duration has passed, then Succeeded or
// Failed. A VM's NICs and public IP are created inline from
// networkInterfaceConfigurations and go with the VM when their deleteOption
// is Delete, as does the OS disk. Generalize needs a deallocated VM; a
// generalized VM never starts again. A gallery image version is created once
// (If-None-Match: * → 412), its source never changes (409
// PropertyChangeNotAllowed), a VM source must exist and match the definition's
// OS state (400) and Hyper-V generation (the operation fails with Conflict).
//
// Error codes follow Azure; message texts marked "unverified" in the source
// are best guesses, the others come from Azure's public examples or reported
// error output.
//
// # Faults and measurement
//
// Rules inject errors, throttling (429 + Retry-After), dropped connections,
// delays and failed operations at any call; the request log classifies every
// request as read, write, delete, poll or auth. The /_model/ admin API (no
// authentication, not logged) exposes all of it to other processes, such as
// tests driving the real binary against cmd/azmodel:
//
//	GET    /_model/snapshot               Snapshot
//	GET    /_model/resources              []Resource
//	GET    /_model/vms                    []VMInfo
//	GET    /_model/versions?imageId=ID    []GalleryVersion
//	GET    /_model/requests               []Request
//	DELETE /_model/requests               empty the request log (and the meter)
//	GET    /_model/meter                  Meter: requests by class, advertised Retry-After
//	GET    /_model/rules                  []RuleState
//	POST   /_model/rules                  Rule → {"id": N}
//	DELETE /_model/rules                  remove every rule
//	DELETE /_model/rules/{id}             remove one rule
//	PUT    /_model/latency                LatencyProfile ({"durations":{"vm.create":"90s"},"scale":0.001})
//	PUT    /_model/settings               {"inProgressPolls":N,"pageSize":N} (fields optional)
//	POST   /_model/seed/gallery           GallerySeed
//	POST   /_model/seed/marketplace       MarketplaceImage
//	POST   /_model/tags                   {"id": ID, "tags": {...}}
//	POST   /_model/settle                 finish every pending operation
package azmodel
