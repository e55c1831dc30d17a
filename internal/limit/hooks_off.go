//go:build !limithooks

package limit

// hooksOn is false outside builds with the limithooks tag, so the hook
// checks compile out of the production table's check path.
const hooksOn = false
