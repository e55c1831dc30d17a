//go:build limithooks

package limit

// hooksOn enables the test hooks of Table (testHookCharge, testHookCAS,
// testHookEvict) in builds with the limithooks tag, used by hooks_test.go.
const hooksOn = true
