//go:build tools

// Keeps `go mod tidy` from dropping what seaweedfs.sh builds.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
