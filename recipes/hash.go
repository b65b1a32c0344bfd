package recipes

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Hash is a stable content hash of the normalized recipe: defaults applied,
// then encoded as JSON with fixed field order and sorted map keys. Key order,
// comments and formatting in the file do not change it; any change of
// meaning does. Nightly bakes compare it to skip unchanged rebuilds.
func (r *Recipe) Hash() string {
	b, err := json.Marshal(r)
	if err != nil {
		// Every field is a string, bool, int, slice or map of those.
		panic("recipes: hash: " + err.Error())
	}
	sum := sha256.Sum256(append([]byte("imagebake-recipe-v1\n"), b...))
	return hex.EncodeToString(sum[:])
}
