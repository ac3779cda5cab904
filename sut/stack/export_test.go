package stack

// PlanForTest exposes plan to the external tests: the components Up would
// start for config in dir.
func PlanForTest(config Config, dir string) []*Component {
	return plan(config, dir, &File{})
}
