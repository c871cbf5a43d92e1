// Evaluates microseg's status objects the way the GitOps tools do, with their own code:
//
//   - kstatus: sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, what Flux's Kustomization
//     `wait: true` / `healthChecks` and `kubectl`-adjacent tools use;
//   - Argo CD: the shipped health.lua run under github.com/yuin/gopher-lua as Argo CD runs a
//     `resource.customizations.health` script (util/lua: a fresh LState with the package, base,
//     table and os libraries, the object as the global `obj`, the returned table as
//     {status, message}), behind gitops-engine's dispatch (a deleting object is Progressing,
//     "Pending deletion", before any script).
//
// The objects are deploy/gitops/argocd/microseg.io/<Kind>/testdata/*.yaml, written by the e2e
// test tests/it/e2e_health.rs from a real API server and kept current by its drift check. Run by
// tests/it/gitops.rs (`cargo test --test it gitops::`), hence by scripts/test.sh.
package gitopshealth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

const root = "../../deploy/gitops/argocd/microseg.io"

// Argo CD's health_test.yaml convention (resource_customizations/<group>/<kind>/).
type healthTests struct {
	Tests []struct {
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

// One row of the acceptance table (acceptance.yaml).
type row struct {
	State   string `json:"state"`
	Kind    string `json:"kind"`
	Input   string `json:"input"`
	Kstatus string `json:"kstatus"`
	Argo    string `json:"argo"`
	Ready   string `json:"ready"`
}

func load(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// As a client reads it from the API server: integers are int64.
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(js); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return obj
}

// decodeValue is Argo CD's conversion of an object into Lua values (util/lua).
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

var validHealth = map[string]bool{
	"Healthy": true, "Progressing": true, "Suspended": true, "Degraded": true, "Missing": true, "Unknown": true,
}

// argoHealth is gitops-engine's GetResourceHealth with the script as the health override.
func argoHealth(obj *unstructured.Unstructured, script string) (string, string, error) {
	if obj.GetDeletionTimestamp() != nil {
		return "Progressing", "Pending deletion", nil
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, lua.OpenOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	st := lua.LVAsString(ret.RawGetString("status"))
	if !validHealth[st] {
		return "Unknown", "invalid health status " + st, nil
	}
	return st, lua.LVAsString(ret.RawGetString("message")), nil
}

func readyOf(obj *unstructured.Unstructured) string {
	conditions, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conditions {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			return fmt.Sprint(m["status"])
		}
	}
	return "-"
}

// Every health_test.yaml case passes, and every testdata file has a case.
func TestArgoCDHealthTests(t *testing.T) {
	kinds, err := filepath.Glob(filepath.Join(root, "*", "health.lua"))
	if err != nil || len(kinds) != 2 {
		t.Fatalf("want health.lua for SegmentationPolicy and EnforcementWindow, found %v (%v)", kinds, err)
	}
	for _, script := range kinds {
		dir := filepath.Dir(script)
		code, err := os.ReadFile(script)
		if err != nil {
			t.Fatal(err)
		}
		if os.Getenv("MICROSEG_UPDATE_GOLDEN") != "" {
			writeCases(t, dir, string(code))
		}
		var cases healthTests
		data, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(data, &cases); err != nil {
			t.Fatalf("%s/health_test.yaml: %v", dir, err)
		}
		covered := map[string]bool{}
		for _, c := range cases.Tests {
			covered[c.InputPath] = true
			st, msg, err := argoHealth(load(t, filepath.Join(dir, c.InputPath)), string(code))
			if err != nil {
				t.Errorf("%s %s: %v", dir, c.InputPath, err)
				continue
			}
			if st != c.HealthStatus.Status || msg != c.HealthStatus.Message {
				t.Errorf("%s %s:\n  got  %s %q\n  want %s %q", filepath.Base(dir), c.InputPath, st, msg, c.HealthStatus.Status, c.HealthStatus.Message)
			}
		}
		inputs, _ := filepath.Glob(filepath.Join(dir, "testdata", "*.yaml"))
		for _, in := range inputs {
			rel := "testdata/" + filepath.Base(in)
			if !covered[rel] {
				t.Errorf("%s: %s has no case in health_test.yaml", filepath.Base(dir), rel)
			}
		}
	}
}

// The acceptance table of issue #17: state -> kstatus -> Argo CD health -> Ready, computed over
// the e2e objects; it must equal acceptance.yaml and the table in README.md's GitOps section.
func TestAcceptanceTable(t *testing.T) {
	data, err := os.ReadFile("acceptance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rows []row
	if err := yaml.UnmarshalStrict(data, &rows); err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	table.WriteString("| State | kstatus (Flux) | Argo CD health | Ready |\n|---|---|---|---|\n")
	for _, r := range rows {
		obj := load(t, filepath.Join(root, r.Kind, "testdata", r.Input))
		res, err := status.Compute(obj)
		if err != nil {
			t.Fatalf("%s: %v", r.State, err)
		}
		script, err := os.ReadFile(filepath.Join(root, r.Kind, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		argo, _, err := argoHealth(obj, string(script))
		if err != nil {
			t.Fatalf("%s: %v", r.State, err)
		}
		ready := readyOf(obj)
		got := fmt.Sprintf("%s | %s | %s", res.Status, argo, ready)
		want := fmt.Sprintf("%s | %s | %s", r.Kstatus, r.Argo, r.Ready)
		if got != want {
			t.Errorf("%s (%s): got %s, want %s (kstatus message %q)", r.State, r.Input, got, want, res.Message)
		}
		// Flux reports a Failed object with kstatus's message: it must say why.
		if res.Status == status.FailedStatus && res.Message == "" {
			t.Errorf("%s: Failed without a message", r.State)
		}
		fmt.Fprintf(&table, "| %s | %s | %s | %s |\n", r.State, res.Status, argo, ready)
	}
	t.Logf("\n%s", table.String())
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), table.String()) {
		t.Errorf("README.md lacks the measured table; put this in its GitOps section:\n%s", table.String())
	}
}

// Every testdata object of a policy appears in the acceptance table.
func TestTableCoversEveryObject(t *testing.T) {
	data, err := os.ReadFile("acceptance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rows []row
	if err := yaml.UnmarshalStrict(data, &rows); err != nil {
		t.Fatal(err)
	}
	in := map[string]bool{}
	for _, r := range rows {
		in[r.Kind+"/"+r.Input] = true
	}
	all, _ := filepath.Glob(filepath.Join(root, "*", "testdata", "*.yaml"))
	var missing []string
	for _, f := range all {
		key := filepath.Base(filepath.Dir(filepath.Dir(f))) + "/" + filepath.Base(f)
		if !in[key] {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("not in acceptance.yaml: %v", missing)
	}
}

// writeCases (MICROSEG_UPDATE_GOLDEN=1) rewrites health_test.yaml from the script's answers over
// testdata/; review the diff (acceptance.yaml states the expected statuses independently).
func writeCases(t *testing.T, dir, script string) {
	t.Helper()
	inputs, _ := filepath.Glob(filepath.Join(dir, "testdata", "*.yaml"))
	sort.Strings(inputs)
	var out strings.Builder
	out.WriteString("tests:\n")
	for _, in := range inputs {
		st, msg, err := argoHealth(load(t, in), script)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		m, _ := json.Marshal(msg)
		fmt.Fprintf(&out, "- healthStatus:\n    status: %s\n    message: %s\n  inputPath: testdata/%s\n", st, string(m), filepath.Base(in))
	}
	if err := os.WriteFile(filepath.Join(dir, "health_test.yaml"), []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
