package runnerreg_test

import (
	"context"
	"fmt"

	"github.com/imagebake/imagebake/internal/ghmodel"
	"github.com/imagebake/imagebake/runnerreg"
)

// A launch mints one JIT config per VM, hands EncodedJITConfig.Reveal() to
// the VM (its userData) and deletes the registration if the VM cannot be
// created.
func ExampleClient_MintJIT() {
	m := ghmodel.New(ghmodel.Options{RunnerKeyBits: 1024})
	defer m.Close()
	m.AddToken("ghp_exampleexampleexampleexample0000")

	scope, err := runnerreg.ParseScope("https://github.com/acme/app")
	if err != nil {
		panic(err)
	}
	c, err := runnerreg.New(runnerreg.Options{
		Scope: scope.WithAPIBase(m.URL()), // a real GitHub needs no override
		Token: runnerreg.NewSecret("ghp_exampleexampleexampleexample0000"),
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	jit, err := c.MintJIT(ctx, "runner-vm-1", []string{"imagebake", "linux"}, 1, "")
	if err != nil {
		panic(err)
	}
	fmt.Println(jit.RunnerID, jit.RunnerName, jit.EncodedJITConfig)
	if err := c.DeleteRunner(ctx, jit.RunnerID); err != nil {
		panic(err)
	}
	// Output: 23 runner-vm-1 [REDACTED]
}
