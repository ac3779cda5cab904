package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The compose test checks docker-compose.yml against this binary without
// Docker: the development machine has no Docker engine, so nothing else would
// notice a flag renamed in Go but not in the compose file until a user's
// `docker compose up` failed. It also checks the properties of the stack the
// design relies on (three brokers, replication 3 with 2 in sync, nginx in
// front of every gateway, the migration running first).

// repositoryRoot is where docker-compose.yml lives, seen from this package.
const repositoryRoot = "../.."

// composeFile is the part of a compose file the checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string             `yaml:"image"`
	Build       composeBuild       `yaml:"build"`
	Entrypoint  stringList         `yaml:"entrypoint"`
	Command     stringList         `yaml:"command"`
	Environment composeEnvironment `yaml:"environment"`
	DependsOn   composeDependsOn   `yaml:"depends_on"`
	Healthcheck *struct {
		Test    stringList `yaml:"test"`
		Disable bool       `yaml:"disable"`
	} `yaml:"healthcheck"`
	Volumes []composeVolume `yaml:"volumes"`
}

// composeBuild is `build: path` or `build: {context, dockerfile}`.
type composeBuild struct {
	Set        bool
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (b *composeBuild) UnmarshalYAML(node *yaml.Node) error {
	b.Set = true
	if node.Kind == yaml.ScalarNode {
		b.Context = node.Value
		return nil
	}
	type plain composeBuild
	var decoded plain
	if err := node.Decode(&decoded); err != nil {
		return err
	}
	*b = composeBuild(decoded)
	b.Set = true
	return nil
}

// stringList is a compose command, entrypoint or test: a list, or a string
// that compose splits into words (quotes are not supported here; use the
// list form for arguments with spaces).
type stringList []string

func (s *stringList) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode {
		*s = strings.Fields(node.Value)
		return nil
	}
	var list []string
	if err := node.Decode(&list); err != nil {
		return err
	}
	*s = list
	return nil
}

// composeEnvironment maps a variable to its value; nil means the variable is
// named without a value (compose passes the host's value through).
type composeEnvironment map[string]*string

func (e *composeEnvironment) UnmarshalYAML(node *yaml.Node) error {
	result := composeEnvironment{}
	if node.Kind == yaml.SequenceNode {
		var list []string
		if err := node.Decode(&list); err != nil {
			return err
		}
		for _, entry := range list {
			name, value, found := strings.Cut(entry, "=")
			if found {
				result[name] = &value
			} else {
				result[name] = nil
			}
		}
		*e = result
		return nil
	}
	var mapping map[string]*string
	if err := node.Decode(&mapping); err != nil {
		return err
	}
	for name, value := range mapping {
		result[name] = value
	}
	*e = result
	return nil
}

// composeDependsOn maps a service to the condition waited for.
type composeDependsOn map[string]string

func (d *composeDependsOn) UnmarshalYAML(node *yaml.Node) error {
	result := composeDependsOn{}
	if node.Kind == yaml.SequenceNode {
		var list []string
		if err := node.Decode(&list); err != nil {
			return err
		}
		for _, name := range list {
			result[name] = "service_started"
		}
		*d = result
		return nil
	}
	var mapping map[string]struct {
		Condition string `yaml:"condition"`
	}
	if err := node.Decode(&mapping); err != nil {
		return err
	}
	for name, dependency := range mapping {
		condition := dependency.Condition
		if condition == "" {
			condition = "service_started"
		}
		result[name] = condition
	}
	*d = result
	return nil
}

// composeVolume is a volume's source and target, short or long syntax.
type composeVolume struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

func (v *composeVolume) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode {
		parts := strings.Split(node.Value, ":")
		v.Source = parts[0]
		if len(parts) > 1 {
			v.Target = parts[1]
		}
		return nil
	}
	type plain composeVolume
	var decoded plain
	if err := node.Decode(&decoded); err != nil {
		return err
	}
	*v = composeVolume(decoded)
	return nil
}

func parseCompose(t *testing.T, text string) composeFile {
	t.Helper()
	var file composeFile
	if err := yaml.Unmarshal([]byte(text), &file); err != nil {
		t.Fatalf("parse compose file: %v", err)
	}
	if len(file.Services) == 0 {
		t.Fatal("compose file has no services")
	}
	return file
}

// ledgerproofProcess is one service that runs our binary, with its command
// line and environment applied to a fresh flag set as parseFlags would.
type ledgerproofProcess struct {
	service    string
	subcommand string
	flags      *flag.FlagSet
}

// value is the effective value of a flag, or "" if the flag does not exist.
func (p ledgerproofProcess) value(name string) string {
	if f := p.flags.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// isOurs reports whether service runs the image built from our Dockerfile:
// it builds it, or it names the image another service builds from it.
func isOurs(file composeFile, service composeService) bool {
	builtFromDockerfile := func(s composeService) bool {
		if !s.Build.Set {
			return false
		}
		context := path.Clean(s.Build.Context)
		dockerfile := s.Build.Dockerfile
		return (context == "." || context == "") && (dockerfile == "" || path.Clean(dockerfile) == "Dockerfile")
	}
	if builtFromDockerfile(service) {
		return true
	}
	if service.Image == "" {
		return false
	}
	for _, other := range file.Services {
		if builtFromDockerfile(other) && other.Image == service.Image {
			return true
		}
	}
	return false
}

// checkProcesses checks every service that runs our binary: the subcommand
// exists, every flag on its command line and every LEDGERPROOF_* variable in
// its environment is a flag of that subcommand with a value that parses, and
// no address is left at a loopback default (inside a container those reach
// the container itself). It returns the processes and one message per
// problem.
func checkProcesses(file composeFile) ([]ledgerproofProcess, []string) {
	var processes []ledgerproofProcess
	var problems []string
	for _, name := range sortedServiceNames(file) {
		service := file.Services[name]
		if !isOurs(file, service) {
			continue
		}
		process, serviceProblems := checkProcess(name, service)
		problems = append(problems, serviceProblems...)
		if process.flags != nil {
			processes = append(processes, process)
		}
	}
	return processes, problems
}

func checkProcess(name string, service composeService) (ledgerproofProcess, []string) {
	var problems []string
	report := func(format string, arguments ...any) {
		problems = append(problems, fmt.Sprintf("service %q: ", name)+fmt.Sprintf(format, arguments...))
	}
	argv := append(slices.Clone([]string(service.Entrypoint)), service.Command...)
	if len(argv) > 0 && path.Base(argv[0]) == "ledgerproof" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		report("no subcommand in command %q (want one of %s)", service.Command, strings.Join(commandNames(), ", "))
		return ledgerproofProcess{}, problems
	}
	subcommand := argv[0]
	command, ok := commands()[subcommand]
	if !ok {
		report("subcommand %q does not exist (want one of %s)", subcommand, strings.Join(commandNames(), ", "))
		return ledgerproofProcess{}, problems
	}
	flags, _ := command.newFlags()
	flags.SetOutput(io.Discard)

	given := map[string]bool{}
	arguments := argv[1:]
	for i := 0; i < len(arguments); i++ {
		argument := arguments[i]
		if argument == "--" {
			report("unexpected arguments %q after \"--\": `ledgerproof %s` takes flags only", arguments[i+1:], subcommand)
			break
		}
		if len(argument) < 2 || argument[0] != '-' {
			report("unexpected argument %q: `ledgerproof %s` takes flags only", argument, subcommand)
			continue
		}
		flagName := strings.TrimPrefix(strings.TrimPrefix(argument, "-"), "-")
		flagName, value, hasValue := strings.Cut(flagName, "=")
		defined := flags.Lookup(flagName)
		if defined == nil {
			report("flag --%s is not defined by `ledgerproof %s`", flagName, subcommand)
			continue
		}
		if !hasValue {
			if boolean, ok := defined.Value.(interface{ IsBoolFlag() bool }); ok && boolean.IsBoolFlag() {
				value = "true"
			} else if i+1 < len(arguments) {
				i++
				value = arguments[i]
			} else {
				report("flag --%s needs a value", flagName)
				continue
			}
		}
		value, err := interpolate(value)
		if err != nil {
			report("flag --%s: %v", flagName, err)
			continue
		}
		if err := flags.Set(flagName, value); err != nil {
			report("flag --%s=%q does not parse: %v", flagName, value, err)
			continue
		}
		given[flagName] = true
	}

	flagOfVariable := map[string]string{}
	flags.VisitAll(func(f *flag.Flag) { flagOfVariable[envName(f.Name)] = f.Name })
	for _, variable := range sortedKeys(service.Environment) {
		if !strings.HasPrefix(variable, "LEDGERPROOF_") {
			continue
		}
		flagName, ok := flagOfVariable[variable]
		if !ok {
			report("environment %s sets no flag of `ledgerproof %s` (no flag --%s)", variable, subcommand,
				strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(variable, "LEDGERPROOF_"), "_", "-")))
			continue
		}
		if given[flagName] {
			report("flag --%s is set both on the command line and by %s; the command line wins, so one of them is misleading", flagName, variable)
			continue
		}
		if service.Environment[variable] == nil {
			report("environment %s has no value (compose would pass the host's through; set it here)", variable)
			continue
		}
		value, err := interpolate(*service.Environment[variable])
		if err != nil {
			report("environment %s: %v", variable, err)
			continue
		}
		if err := flags.Set(flagName, value); err != nil {
			report("environment %s=%q (flag --%s) does not parse: %v", variable, value, flagName, err)
		}
	}

	flags.VisitAll(func(f *flag.Flag) {
		if value := f.Value.String(); isLoopback(value) {
			report("flag --%s is %q: a loopback address inside a container reaches only the container itself; set it with --%s or %s",
				f.Name, value, f.Name, envName(f.Name))
		}
	})
	return ledgerproofProcess{service: name, subcommand: subcommand, flags: flags}, problems
}

var loopbackPattern = regexp.MustCompile(`(^|[/@,\[])(127\.0\.0\.1|localhost|::1)([:/\],]|$)`)

func isLoopback(value string) bool { return loopbackPattern.MatchString(value) }

// interpolate resolves compose's ${NAME:-default} and ${NAME-default} to the
// default (the value a user gets without setting NAME) and $$ to $; any other
// reference cannot be checked here and is an error.
func interpolate(value string) (string, error) {
	var result strings.Builder
	for i := 0; i < len(value); i++ {
		if value[i] != '$' {
			result.WriteByte(value[i])
			continue
		}
		if i+1 < len(value) && value[i+1] == '$' {
			result.WriteByte('$')
			i++
			continue
		}
		end := strings.IndexByte(value[i:], '}')
		if i+1 >= len(value) || value[i+1] != '{' || end < 0 {
			return "", fmt.Errorf("value %q uses a variable without a default; the test cannot check it", value)
		}
		reference := value[i+2 : i+end]
		_, fallback, found := strings.Cut(reference, ":-")
		if !found {
			_, fallback, found = strings.Cut(reference, "-")
		}
		if !found {
			return "", fmt.Errorf("value %q uses ${%s} without a default; the test cannot check it", value, reference)
		}
		result.WriteString(fallback)
		i += end
	}
	return result.String(), nil
}

// checkProcessRoles checks what the pipeline needs of its processes as a
// whole: at least two gateways and two workers, unique names and group
// instance ids, every endpoint a compose service, and the migration done
// before any of them starts.
func checkProcessRoles(file composeFile, processes []ledgerproofProcess) []string {
	var problems []string
	bySubcommand := map[string][]ledgerproofProcess{}
	for _, process := range processes {
		bySubcommand[process.subcommand] = append(bySubcommand[process.subcommand], process)
	}
	for _, role := range []string{"gateway", "worker"} {
		if got := len(bySubcommand[role]); got < 2 {
			problems = append(problems, fmt.Sprintf("%d services run `ledgerproof %s`, want at least 2", got, role))
		}
	}
	if len(bySubcommand["migrate"]) == 0 {
		problems = append(problems, "no service runs `ledgerproof migrate`")
	}

	unique := func(role, flagName string) {
		owner := map[string]string{}
		for _, process := range bySubcommand[role] {
			value := process.value(flagName)
			if value == "" {
				problems = append(problems, fmt.Sprintf("service %q: flag --%s is empty, want a value unique per %s", process.service, flagName, role))
				continue
			}
			if other, taken := owner[value]; taken {
				problems = append(problems, fmt.Sprintf("services %q and %q both have --%s=%s, want it unique", other, process.service, flagName, value))
			}
			owner[value] = process.service
		}
	}
	unique("gateway", "name")
	unique("worker", "name")
	unique("worker", "group-instance-id")

	migrations := map[string]bool{}
	for _, process := range bySubcommand["migrate"] {
		migrations[process.service] = true
	}
	for _, process := range processes {
		if process.subcommand != "gateway" && process.subcommand != "worker" && process.subcommand != "relay" && process.subcommand != "settler" {
			continue
		}
		waits := false
		for dependency, condition := range file.Services[process.service].DependsOn {
			if migrations[dependency] && condition == "service_completed_successfully" {
				waits = true
			}
		}
		if !waits {
			problems = append(problems, fmt.Sprintf("service %q does not depend on a migrate service with condition service_completed_successfully", process.service))
		}
		for _, endpoint := range endpointsOf(process) {
			if _, ok := file.Services[endpoint.host]; !ok {
				problems = append(problems, fmt.Sprintf("service %q: flag --%s names host %q, which is not a service of the compose file",
					process.service, endpoint.flagName, endpoint.host))
			}
		}
	}
	return problems
}

type endpoint struct{ flagName, host string }

// endpointsOf lists the hosts a process connects to.
func endpointsOf(process ledgerproofProcess) []endpoint {
	var endpoints []endpoint
	hostOf := func(address string) string {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return address
		}
		return host
	}
	if value := process.value("postgres-url"); value != "" {
		if parsed, err := url.Parse(value); err == nil {
			endpoints = append(endpoints, endpoint{"postgres-url", parsed.Hostname()})
		}
	}
	if value := process.value("redis-addr"); value != "" {
		endpoints = append(endpoints, endpoint{"redis-addr", hostOf(value)})
	}
	if value := process.value("brokers"); value != "" {
		for _, broker := range strings.Split(value, ",") {
			endpoints = append(endpoints, endpoint{"brokers", hostOf(strings.TrimSpace(broker))})
		}
	}
	return endpoints
}

// checkKafka checks the brokers: exactly three, each broker and controller of
// one KRaft quorum, topics replicated 3 times with 2 in sync required and
// never created implicitly; and that our processes create the commands topic
// to match and know every broker.
func checkKafka(file composeFile, processes []ledgerproofProcess) []string {
	var problems []string
	var brokers []string
	for _, name := range sortedServiceNames(file) {
		image := file.Services[name].Image
		if strings.HasPrefix(image, "apache/kafka") || strings.HasPrefix(image, "bitnami/kafka") {
			brokers = append(brokers, name)
		}
	}
	if len(brokers) != 3 {
		problems = append(problems, fmt.Sprintf("%d Kafka broker services %q, want 3", len(brokers), brokers))
	}
	settingOf := func(service, setting string) string {
		value := file.Services[service].Environment[setting]
		if value == nil {
			return ""
		}
		return *value
	}
	want := map[string]string{
		"KAFKA_DEFAULT_REPLICATION_FACTOR":       "3",
		"KAFKA_MIN_INSYNC_REPLICAS":              "2",
		"KAFKA_NUM_PARTITIONS":                   "16",
		"KAFKA_AUTO_CREATE_TOPICS_ENABLE":        "false",
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
	}
	nodeOwner := map[string]string{}
	var clusterID, voters string
	for _, broker := range brokers {
		for _, setting := range sortedKeys(want) {
			if got := settingOf(broker, setting); got != want[setting] {
				problems = append(problems, fmt.Sprintf("service %q: %s is %q, want %q", broker, setting, got, want[setting]))
			}
		}
		roles := strings.Split(settingOf(broker, "KAFKA_PROCESS_ROLES"), ",")
		if !slices.Contains(roles, "broker") || !slices.Contains(roles, "controller") {
			problems = append(problems, fmt.Sprintf("service %q: KAFKA_PROCESS_ROLES is %q, want broker,controller (KRaft combined mode)",
				broker, settingOf(broker, "KAFKA_PROCESS_ROLES")))
		}
		node := settingOf(broker, "KAFKA_NODE_ID")
		if node == "" {
			problems = append(problems, fmt.Sprintf("service %q: KAFKA_NODE_ID is not set", broker))
		} else if other, taken := nodeOwner[node]; taken {
			problems = append(problems, fmt.Sprintf("services %q and %q both have KAFKA_NODE_ID %s", other, broker, node))
		}
		nodeOwner[node] = broker
		if id := settingOf(broker, "CLUSTER_ID"); id == "" || (clusterID != "" && id != clusterID) {
			problems = append(problems, fmt.Sprintf("service %q: CLUSTER_ID %q, want one non-empty id shared by every broker", broker, id))
		} else {
			clusterID = id
		}
		if got := settingOf(broker, "KAFKA_CONTROLLER_QUORUM_VOTERS"); voters != "" && got != voters {
			problems = append(problems, fmt.Sprintf("service %q: KAFKA_CONTROLLER_QUORUM_VOTERS %q differs from %q", broker, got, voters))
		} else {
			voters = got
		}
	}
	for node, broker := range nodeOwner {
		if node != "" && !strings.Contains(","+voters, ","+node+"@"+broker+":") {
			problems = append(problems, fmt.Sprintf("KAFKA_CONTROLLER_QUORUM_VOTERS %q does not list %s@%s", voters, node, broker))
		}
	}

	for _, process := range processes {
		if process.subcommand != "gateway" && process.subcommand != "worker" {
			continue
		}
		if got := process.value("replication-factor"); got != "3" {
			problems = append(problems, fmt.Sprintf("service %q: --replication-factor is %s, want 3 (the brokers' replication)", process.service, got))
		}
		if got := process.value("partitions"); got != want["KAFKA_NUM_PARTITIONS"] {
			problems = append(problems, fmt.Sprintf("service %q: --partitions is %s, want %s (the brokers' KAFKA_NUM_PARTITIONS)",
				process.service, got, want["KAFKA_NUM_PARTITIONS"]))
		}
		known := map[string]bool{}
		for _, endpoint := range endpointsOf(process) {
			if endpoint.flagName == "brokers" {
				known[endpoint.host] = true
			}
		}
		for _, broker := range brokers {
			if !known[broker] {
				problems = append(problems, fmt.Sprintf("service %q: --brokers %q does not list broker %q", process.service, process.value("brokers"), broker))
			}
		}
	}
	return problems
}

// checkDependencies checks that every depends_on names a service, with a
// condition compose knows, and that service_healthy waits on a service that
// has a health check.
func checkDependencies(file composeFile) []string {
	var problems []string
	conditions := []string{"service_started", "service_healthy", "service_completed_successfully"}
	for _, name := range sortedServiceNames(file) {
		dependsOn := file.Services[name].DependsOn
		for _, dependency := range sortedKeys(dependsOn) {
			condition := dependsOn[dependency]
			target, ok := file.Services[dependency]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("service %q depends on %q, which is not a service", name, dependency))
			case !slices.Contains(conditions, condition):
				problems = append(problems, fmt.Sprintf("service %q: depends_on %q has condition %q, want one of %s", name, dependency, condition, strings.Join(conditions, ", ")))
			case condition == "service_healthy" && (target.Healthcheck == nil || target.Healthcheck.Disable || len(target.Healthcheck.Test) == 0):
				problems = append(problems, fmt.Sprintf("service %q waits for %q to be healthy, but %q has no health check", name, dependency, dependency))
			}
		}
	}
	return problems
}

var (
	upstreamPattern  = regexp.MustCompile(`upstream\s+(\S+)\s*\{([^}]*)\}`)
	serverPattern    = regexp.MustCompile(`(?m)^\s*server\s+([^\s;]+)`)
	proxyPassPattern = regexp.MustCompile(`proxy_pass\s+https?://([^\s;/]+)`)
)

// checkNginx checks that nginx's upstream lists exactly the gateways, at the
// port each listens on, and that requests are proxied to that upstream.
func checkNginx(configuration string, processes []ledgerproofProcess) []string {
	var problems []string
	upstreams := map[string][]string{}
	for _, match := range upstreamPattern.FindAllStringSubmatch(configuration, -1) {
		for _, server := range serverPattern.FindAllStringSubmatch(match[2], -1) {
			upstreams[match[1]] = append(upstreams[match[1]], server[1])
		}
	}
	var wanted []string
	for _, process := range processes {
		if process.subcommand != "gateway" {
			continue
		}
		_, port, err := net.SplitHostPort(process.value("listen"))
		if err != nil {
			problems = append(problems, fmt.Sprintf("service %q: --listen %q has no port: %v", process.service, process.value("listen"), err))
			continue
		}
		wanted = append(wanted, net.JoinHostPort(process.service, port))
	}
	sort.Strings(wanted)
	proxied := proxyPassPattern.FindAllStringSubmatch(configuration, -1)
	if len(proxied) == 0 {
		return append(problems, "nginx.conf has no proxy_pass")
	}
	for _, match := range proxied {
		servers, ok := upstreams[match[1]]
		if !ok {
			problems = append(problems, fmt.Sprintf("nginx.conf: proxy_pass to %q, which is not an upstream block", match[1]))
			continue
		}
		servers = slices.Sorted(slices.Values(servers))
		if !slices.Equal(servers, wanted) {
			problems = append(problems, fmt.Sprintf("nginx.conf: upstream %q lists %q, want every gateway service %q", match[1], servers, wanted))
		}
	}
	return problems
}

// nginxConfiguration finds the nginx service and reads the configuration
// file it mounts from the repository.
func nginxConfiguration(t *testing.T, file composeFile) string {
	t.Helper()
	for _, name := range sortedServiceNames(file) {
		service := file.Services[name]
		if !strings.HasPrefix(service.Image, "nginx") {
			continue
		}
		for _, volume := range service.Volumes {
			if strings.HasPrefix(volume.Target, "/etc/nginx/") && strings.HasPrefix(volume.Source, ".") {
				text, err := os.ReadFile(filepath.Join(repositoryRoot, filepath.FromSlash(volume.Source)))
				if err != nil {
					t.Fatalf("service %q mounts %s: %v", name, volume.Source, err)
				}
				return string(text)
			}
		}
		t.Fatalf("service %q mounts no configuration file from the repository into /etc/nginx/", name)
	}
	t.Fatal("no nginx service in the compose file")
	return ""
}

// checkCompose runs every check that needs only the compose file.
func checkCompose(file composeFile) ([]ledgerproofProcess, []string) {
	processes, problems := checkProcesses(file)
	problems = append(problems, checkProcessRoles(file, processes)...)
	problems = append(problems, checkKafka(file, processes)...)
	problems = append(problems, checkDependencies(file)...)
	return processes, problems
}

func TestComposeFileMatchesBinary(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repositoryRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	file := parseCompose(t, string(text))
	processes, problems := checkCompose(file)
	problems = append(problems, checkNginx(nginxConfiguration(t, file), processes)...)
	for _, problem := range problems {
		t.Error(problem)
	}
	// Guard against a check that passes because it looked at nothing; and
	// one relay and one settler (docs/settlement.md): the settler reads every
	// partition of the settlements topic without a consumer group.
	subcommands := map[string]int{}
	for _, process := range processes {
		subcommands[process.subcommand]++
	}
	if subcommands["gateway"] != 2 || subcommands["worker"] != 2 || subcommands["migrate"] != 1 || subcommands["relay"] != 1 || subcommands["settler"] != 1 {
		t.Errorf("services running our image by subcommand: %v, want 2 gateways, 2 workers, 1 migrate, 1 relay, 1 settler", subcommands)
	}
}

// TestComposeUsesFlagsAndEnvironment makes sure the compose file exercises
// both ways of configuring our processes, so the checks above test both.
func TestComposeUsesFlagsAndEnvironment(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repositoryRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	file := parseCompose(t, string(text))
	var flagCount, variableCount int
	for _, name := range sortedServiceNames(file) {
		service := file.Services[name]
		if !isOurs(file, service) {
			continue
		}
		for _, argument := range service.Command {
			if strings.HasPrefix(argument, "-") {
				flagCount++
			}
		}
		for variable := range service.Environment {
			if strings.HasPrefix(variable, "LEDGERPROOF_") {
				variableCount++
			}
		}
	}
	if flagCount == 0 || variableCount == 0 {
		t.Errorf("our services use %d flags and %d LEDGERPROOF_* variables, want both kinds", flagCount, variableCount)
	}
}

func TestComposeDockerfile(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repositoryRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(text)
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/ledgerproof", `ENTRYPOINT ["ledgerproof"]`} {
		if !strings.Contains(dockerfile, want) {
			t.Errorf("Dockerfile does not contain %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(repositoryRoot, ".dockerignore")); err != nil {
		t.Errorf(".dockerignore: %v", err)
	}
}

// composeSnippet is a small valid stack the checker tests start from; each
// case changes one thing. It uses all three flag forms the checker accepts.
const composeSnippet = `
x-image: &image
  image: ledgerproof:test
  build: .
x-environment: &environment
  LEDGERPROOF_POSTGRES_URL: postgres://ledger@postgres:5432/ledger
  LEDGERPROOF_REDIS_ADDR: redis:6379
  LEDGERPROOF_BROKERS: kafka-1:9092,kafka-2:9092,kafka-3:9092
  LEDGERPROOF_REPLICATION_FACTOR: "3"
x-kafka: &kafka
  CLUSTER_ID: cluster
  KAFKA_PROCESS_ROLES: broker,controller
  KAFKA_CONTROLLER_QUORUM_VOTERS: 1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093
  KAFKA_DEFAULT_REPLICATION_FACTOR: "3"
  KAFKA_MIN_INSYNC_REPLICAS: "2"
  KAFKA_NUM_PARTITIONS: "16"
  KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false"
  KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: "3"
x-depends: &depends
  migrate: {condition: service_completed_successfully}
services:
  postgres: {image: "postgres:15", healthcheck: {test: [CMD, pg_isready]}}
  redis: {image: "redis:7"}
  kafka-1: {image: "apache/kafka:3.9.0", environment: {<<: *kafka, KAFKA_NODE_ID: "1"}}
  kafka-2: {image: "apache/kafka:3.9.0", environment: {<<: *kafka, KAFKA_NODE_ID: "2"}}
  kafka-3: {image: "apache/kafka:3.9.0", environment: {<<: *kafka, KAFKA_NODE_ID: "3"}}
  migrate:
    <<: *image
    command: [migrate, --postgres-url=postgres://ledger@postgres:5432/ledger]
    depends_on: {postgres: {condition: service_healthy}}
  gateway-1:
    <<: *image
    command: [ledgerproof, gateway, --name, gateway-1, --internal-listen=0.0.0.0:9180, --listen=0.0.0.0:8080]
    environment: *environment
    depends_on: *depends
  gateway-2:
    image: ledgerproof:test
    command: gateway -name=gateway-2 -internal-listen 0.0.0.0:9180 -listen 0.0.0.0:8080
    environment: *environment
    depends_on: *depends
  worker-1:
    <<: *image
    command: [worker, --name=worker-1, --group-instance-id=worker-1, --metrics-listen=0.0.0.0:9100]
    environment: *environment
    depends_on: *depends
  worker-2:
    <<: *image
    command: [worker, --name=worker-2, --group-instance-id=worker-2, --metrics-listen=0.0.0.0:9100]
    environment: {<<: *environment, LEDGERPROOF_BATCH_SIZE: "256"}
    depends_on: *depends
`

// changeSnippet applies edits to the snippet: each edit replaces one exact
// line fragment, which must be present.
func changeSnippet(t *testing.T, edits ...string) string {
	t.Helper()
	text := composeSnippet
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(text, edits[i]) {
			t.Fatalf("snippet does not contain %q", edits[i])
		}
		text = strings.Replace(text, edits[i], edits[i+1], 1)
	}
	return text
}

// TestComposeCheckerReportsMistakes is the checker's own test: each case
// breaks the valid snippet in one way, and the checker must name the service
// and the flag or variable at fault.
func TestComposeCheckerReportsMistakes(t *testing.T) {
	cases := []struct {
		name  string
		edits []string
		want  []string
	}{
		{
			name: "valid snippet, all three flag forms",
			want: nil,
		},
		{
			name:  "bogus flag and bogus environment variable",
			edits: []string{"--name, gateway-1,", "--name, gateway-1, --no-such-flag, x,", `LEDGERPROOF_BATCH_SIZE: "256"`, `LEDGERPROOF_NO_SUCH_SETTING: "1"`},
			want: []string{`service "gateway-1": flag --no-such-flag is not defined by ` + "`ledgerproof gateway`",
				`service "worker-2": environment LEDGERPROOF_NO_SUCH_SETTING sets no flag of ` + "`ledgerproof worker`"},
		},
		{
			name:  "flag of another subcommand",
			edits: []string{"--name=worker-1,", "--name=worker-1, --listen=0.0.0.0:1,"},
			want:  []string{`service "worker-1": flag --listen is not defined by ` + "`ledgerproof worker`"},
		},
		{
			name:  "flag value does not parse",
			edits: []string{"--group-instance-id=worker-1,", "--group-instance-id=worker-1, --batch-size=many,"},
			want:  []string{`service "worker-1": flag --batch-size="many" does not parse`},
		},
		{
			name:  "environment value does not parse",
			edits: []string{`LEDGERPROOF_BATCH_SIZE: "256"`, `LEDGERPROOF_BATCH_SIZE: "lots"`},
			want:  []string{`service "worker-2": environment LEDGERPROOF_BATCH_SIZE="lots" (flag --batch-size) does not parse`},
		},
		{
			name:  "replication factor out of range",
			edits: []string{`LEDGERPROOF_REPLICATION_FACTOR: "3"`, `LEDGERPROOF_REPLICATION_FACTOR: "0"`},
			want:  []string{`service "gateway-1": environment LEDGERPROOF_REPLICATION_FACTOR="0" (flag --replication-factor) does not parse`},
		},
		{
			name:  "flag without its value",
			edits: []string{"--metrics-listen=0.0.0.0:9100]\n    environment: *environment", "--metrics-listen=0.0.0.0:9100, --group]\n    environment: *environment"},
			want:  []string{`service "worker-1": flag --group needs a value`},
		},
		{
			name:  "positional argument",
			edits: []string{"-listen 0.0.0.0:8080", "-listen 0.0.0.0:8080 extra"},
			want:  []string{`service "gateway-2": unexpected argument "extra"`},
		},
		{
			name:  "unknown subcommand",
			edits: []string{"command: [migrate,", "command: [migrat,"},
			want:  []string{`service "migrate": subcommand "migrat" does not exist`, "no service runs `ledgerproof migrate`"},
		},
		{
			name:  "loopback default left in a container",
			edits: []string{"-listen 0.0.0.0:8080", ""},
			want:  []string{`service "gateway-2": flag --listen is "127.0.0.1:18080": a loopback address`},
		},
		{
			name:  "flag and variable set the same thing",
			edits: []string{"--listen=0.0.0.0:8080]", "--listen=0.0.0.0:8080, --redis-addr=redis:6379]"},
			want:  []string{`service "gateway-1": flag --redis-addr is set both on the command line and by LEDGERPROOF_REDIS_ADDR`},
		},
		{
			name:  "duplicate group instance id",
			edits: []string{"--group-instance-id=worker-2", "--group-instance-id=worker-1"},
			want:  []string{`services "worker-1" and "worker-2" both have --group-instance-id=worker-1`},
		},
		{
			name:  "endpoint host is not a service",
			edits: []string{"LEDGERPROOF_REDIS_ADDR: redis:6379", "LEDGERPROOF_REDIS_ADDR: cache:6379"},
			want:  []string{`service "gateway-1": flag --redis-addr names host "cache", which is not a service`},
		},
		{
			name:  "depends_on a missing service",
			edits: []string{"migrate: {condition: service_completed_successfully}", "migrate: {condition: service_completed_successfully}\n  kafka-9: {condition: service_started}"},
			want:  []string{`service "gateway-1" depends on "kafka-9", which is not a service`},
		},
		{
			name:  "healthy wait on a service without a health check",
			edits: []string{"depends_on: {postgres: {condition: service_healthy}}", "depends_on: {redis: {condition: service_healthy}}"},
			want:  []string{`service "migrate" waits for "redis" to be healthy, but "redis" has no health check`},
		},
		{
			name:  "gateway not waiting for the migration",
			edits: []string{"-listen 0.0.0.0:8080\n    environment: *environment\n    depends_on: *depends", "-listen 0.0.0.0:8080\n    environment: *environment"},
			want:  []string{`service "gateway-2" does not depend on a migrate service`},
		},
		{
			name:  "two brokers and weak durability",
			edits: []string{`  kafka-3: {image: "apache/kafka:3.9.0", environment: {<<: *kafka, KAFKA_NODE_ID: "3"}}` + "\n", "", `KAFKA_MIN_INSYNC_REPLICAS: "2"`, `KAFKA_MIN_INSYNC_REPLICAS: "1"`},
			want:  []string{`2 Kafka broker services ["kafka-1" "kafka-2"], want 3`, `service "kafka-1": KAFKA_MIN_INSYNC_REPLICAS is "1", want "2"`},
		},
		{
			name:  "topic created with one replica",
			edits: []string{`LEDGERPROOF_REPLICATION_FACTOR: "3"`, `LEDGERPROOF_REPLICATION_FACTOR: "1"`},
			want:  []string{`service "worker-1": --replication-factor is 1, want 3`},
		},
		{
			name:  "process does not know every broker",
			edits: []string{"LEDGERPROOF_BROKERS: kafka-1:9092,kafka-2:9092,kafka-3:9092", "LEDGERPROOF_BROKERS: kafka-1:9092"},
			want:  []string{`service "gateway-1": --brokers "kafka-1:9092" does not list broker "kafka-2"`},
		},
	}
	for _, test := range cases {
		t.Run(test.name, func(t *testing.T) {
			_, problems := checkCompose(parseCompose(t, changeSnippet(t, test.edits...)))
			if test.want == nil && len(problems) > 0 {
				t.Fatalf("the valid snippet got problems:\n%s", strings.Join(problems, "\n"))
			}
			for _, want := range test.want {
				if !slices.ContainsFunc(problems, func(problem string) bool { return strings.Contains(problem, want) }) {
					t.Errorf("no problem contains %q; got:\n%s", want, strings.Join(problems, "\n"))
				}
			}
		})
	}
}

func TestComposeNginxCheckerReportsMissingGateway(t *testing.T) {
	processes, problems := checkCompose(parseCompose(t, composeSnippet))
	if len(problems) > 0 {
		t.Fatalf("the valid snippet got problems:\n%s", strings.Join(problems, "\n"))
	}
	cases := []struct {
		name          string
		configuration string
		want          string
	}{
		{"both gateways", "upstream gateways {\n server gateway-1:8080;\n server gateway-2:8080 max_fails=3;\n}\nlocation / { proxy_pass http://gateways; }", ""},
		{"one gateway missing", "upstream gateways {\n server gateway-1:8080;\n}\nlocation / { proxy_pass http://gateways; }", `upstream "gateways" lists ["gateway-1:8080"]`},
		{"wrong port", "upstream gateways {\n server gateway-1:8080;\n server gateway-2:80;\n}\nlocation / { proxy_pass http://gateways; }", `want every gateway service ["gateway-1:8080" "gateway-2:8080"]`},
		{"proxy to no upstream", "location / { proxy_pass http://gateway-1:8080; }", `proxy_pass to "gateway-1:8080", which is not an upstream block`},
		{"no proxy", "events {}", "nginx.conf has no proxy_pass"},
	}
	for _, test := range cases {
		t.Run(test.name, func(t *testing.T) {
			problems := checkNginx(test.configuration, processes)
			if test.want == "" {
				if len(problems) > 0 {
					t.Fatalf("got problems:\n%s", strings.Join(problems, "\n"))
				}
				return
			}
			if !slices.ContainsFunc(problems, func(problem string) bool { return strings.Contains(problem, test.want) }) {
				t.Errorf("no problem contains %q; got:\n%s", test.want, strings.Join(problems, "\n"))
			}
		})
	}
}

func TestComposeInterpolate(t *testing.T) {
	cases := []struct {
		value, want string
		fails       bool
	}{
		{value: "plain", want: "plain"},
		{value: "${PORT:-8080}", want: "8080"},
		{value: "0.0.0.0:${PORT-9100}", want: "0.0.0.0:9100"},
		{value: "cost$$", want: "cost$"},
		{value: "${PORT}", fails: true},
		{value: "$PORT", fails: true},
	}
	for _, test := range cases {
		got, err := interpolate(test.value)
		if test.fails {
			if err == nil {
				t.Errorf("interpolate(%q) = %q, want an error", test.value, got)
			}
			continue
		}
		if err != nil || got != test.want {
			t.Errorf("interpolate(%q) = %q, %v; want %q", test.value, got, err, test.want)
		}
	}
}

func sortedServiceNames(file composeFile) []string {
	return sortedKeys(file.Services)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}

func commandNames() []string {
	return sortedKeys(commands())
}
