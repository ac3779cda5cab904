package stack

// PlanForTest exposes plan to the external tests: the components Up would
// start for config in dir.
func PlanForTest(config Config, dir string) []*Component {
	return plan(config, dir, &File{})
}

// PlanWithFileForTest is PlanForTest that also fills file's endpoints.
func PlanWithFileForTest(config Config, dir string, file *File) []*Component {
	return plan(config, dir, file)
}

// ValidateForTest exposes Config.validate.
func ValidateForTest(config Config) error { return config.validate() }

// SaveForTest writes file to its directory's stack file.
func SaveForTest(file *File) error { return file.save() }
