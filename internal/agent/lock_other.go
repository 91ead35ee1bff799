//go:build !unix

package agent

import (
	"fmt"
	"os"
)

// lockDir makes the agent's folder. Elsewhere than on Unix it takes no lock: run one agent per folder.
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent folder: %w", err)
	}
	return func() {}, nil
}
