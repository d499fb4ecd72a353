package config

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/reload"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

const minimal = "output: {dir: /run/secrets}\nsecrets:\n  - {name: A, ref: \"file:///a\"}\n"

// TestParseErrors has one case per kind of problem. Each checks the start of
// the first message: file:line:column: field: and a part of what follows.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // prefix of the first error line, after "x.yaml:"
		msg  string // part of the same line
	}{
		{"malformed yaml", "output:\n  dir: /a\n   bad: [\n", "3:7: ", "invalid YAML: mapping values are not allowed"},
		{"tab indentation", "output:\n\tdir: /a\n", "2:1: ", "(a tab: YAML indents with spaces only)"},
		{"tab after non-ASCII", "# é — comment\noutput:\n\tdir: /a\n", "3:1: ", "(a tab: YAML indents with spaces only)"},
		{"tab after a BOM", "\ufeffoutput:\n\tdir: /a\n", "2:1: ", "(a tab: YAML indents with spaces only)"},
		{"no false tab hint", "# éé\na:\tb: c\n", "2:5: ", "mapping values are not allowed in this context"},
		{"end of file after non-ASCII", "# ééé\noutput: {dir: /a}\nsecrets: [\n  {name: A, ref: \"file:///a\"}\n", "5:1: ", "(at the end of the file)"},
		{"mis-indented key", "output:\n  dir: /a\nsecrets:\n  - name: A\n    ref: file:///a\n   file: x\n", "6:4: ", "did not find expected '-' indicator; while parsing a block collection that starts at 4:3"},
		{"unclosed flow sequence", "output: {dir: /a}\nsecrets: [\n  {name: A, ref: \"file:///a\"}\n", "4:1: ", "(at the end of the file); while parsing a flow sequence that starts at 2:10"},
		{"two colons", "a: b: c\n", "1:5: ", "mapping values are not allowed"},
		{"empty file", "", " ", "the file is empty"},
		{"second document", minimal + "---\nlisten: :1\n", "4:1: ", "a second YAML document"},
		{"not a mapping", "- a\n", "1:1: ", "want a mapping, got a list"},
		{"unknown key top", minimal + "lisen: :1\n", "4:1: lisen: ", `unknown key "lisen" (did you mean "listen"?)`},
		{"unknown key nested", "output: {dir: /a, mod: \"0440\"}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "1:19: output.mod: ", "want one of allow_disk, dir, gid, mode, uid"},
		{"unknown key in secret", "output: {dir: /a}\nsecrets:\n  - name: A\n    ref: file:///a\n    path: x\n", "5:5: secrets[0].path: ", "unknown key"},
		{"inline token", "output: {dir: /a}\nsources:\n  vault:\n    auth: {method: token, token: s.abc}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "4:27: sources.vault.auth.token: ", "token_file, or set VAULT_TOKEN"},
		{"duplicate key", "output:\n  dir: /a\n  dir: /b\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "3:3: output.dir: ", `duplicate key "dir" (first at line 2)`},
		{"wrong type string", minimal + "listen: [a]\n", "4:9: listen: ", "want a string, got a list"},
		{"wrong type int", minimal + "concurrency: many\n", "4:14: concurrency: ", "want an integer, got a string"},
		{"wrong type bool", "output: {dir: /a, allow_disk: \"yes\"}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "1:31: output.allow_disk: ", "want true or false"},
		{"wrong type mapping", "output: /run/secrets\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "1:9: output: ", "want a mapping, got a string"},
		{"int out of range", minimal + "concurrency: 0\n", "4:14: concurrency: ", "want an integer from 1 to 1024"},
		{"duplicate name", "output: {dir: /a}\nsecrets:\n  - {name: A, ref: \"file:///a\", file: x}\n  - {name: A, ref: \"file:///b\", file: y}\n", "4:12: secrets[1].name: ", `duplicate secret name "A" (first at secrets[0], line 3)`},
		{"duplicate target default", "output: {dir: /a}\nsecrets:\n  - {name: A, ref: \"file:///a\"}\n  - {name: B, ref: \"file:///b\", file: a}\n", "4:39: secrets[1]: ", `target file "a" is also written by secrets[0]`},
		{"duplicate target bundle", "output: {dir: /a}\nsecrets:\n  - {name: A, ref: \"file:///a\", bundle: tls, file: k}\n  - {name: B, ref: \"file:///b\", bundle: tls, file: k}\n", "4:52: secrets[1]: ", `target file "tls/k"`},
		{"bundle clashes with file", "output: {dir: /a}\nsecrets:\n  - {name: TLS, ref: \"file:///a\"}\n  - {name: B, ref: \"file:///b\", bundle: tls}\n", "4:41: secrets[1].bundle: ", `bundle directory "tls" has the name of the target file of secrets[0]`},
		{"bad duration", minimal + "refresh: 5 minutes\n", "4:10: refresh: ", `want a duration such as "90s" or "1m", got "5 minutes"`},
		{"duration without unit", minimal + "refresh: 60\n", "4:10: refresh: ", "a number needs a unit"},
		{"negative duration", minimal + "refresh: -1s\n", "4:10: refresh: ", "want a positive duration"},
		{"bad mode", "output: {dir: /a, mode: \"0999\"}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "1:25: output.mode: ", `want an octal mode from "0000" to "0777"`},
		{"mode too big", "output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\", mode: \"1777\"}]\n", "2:45: secrets[0].mode: ", "want an octal mode"},
		{"unquoted mode", "output: {dir: /a, mode: 0440}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "1:25: output.mode: ", "quote it"},
		{"bad size", minimal + "max_file_size: 1 lightyear\n", "4:16: max_file_size: ", "want a size"},
		{"bad ref", "output: {dir: /a}\nsecrets:\n  - name: A\n    ref: vault://secret\n", "4:10: secrets[0].ref: ", `invalid ref "vault://secret"`},
		{"bad ref scheme", "output: {dir: /a}\nsecrets:\n  - name: A\n    ref: s3://b/k\n", "4:10: secrets[0].ref: ", "unknown scheme"},
		{"missing ref", "output: {dir: /a}\nsecrets:\n  - name: A\n", "3:5: secrets[0].ref: ", "required"},
		{"bad name", "output: {dir: /a}\nsecrets:\n  - name: my-secret\n    ref: file:///a\n", "3:11: secrets[0].name: ", "^[A-Za-z_][A-Za-z0-9_]*$"},
		{"missing name", "output: {dir: /a}\nsecrets:\n  - ref: file:///a\n", "3:5: secrets[0].name: ", "required"},
		{"target with slash", "output: {dir: /a}\nsecrets:\n  - {name: A, ref: \"file:///a\", file: x/y}\n", "3:39: secrets[0].file: ", "contains a slash"},
		{"target with dotdot", "output: {dir: /a}\nsecrets:\n  - {name: A, ref: \"file:///a\", file: a..b}\n", "3:39: secrets[0].file: ", `contains ".."`},
		{"target hidden", "output: {dir: /a}\nsecrets:\n  - {name: A, ref: \"file:///a\", file: .data}\n", "3:39: secrets[0].file: ", `starts with "."`},
		{"target NUL", "output: {dir: /a}\nsecrets:\n  - {name: A, ref: \"file:///a\", file: \"a\\0b\"}\n", "3:39: secrets[0].file: ", "NUL"},
		{"bundle hidden", "output: {dir: /a}\nsecrets:\n  - {name: A, ref: \"file:///a\", bundle: ..data}\n", "3:41: secrets[0].bundle: ", `bundle name "..data"`},
		{"missing output.dir", "secrets: [{name: A, ref: \"file:///a\"}]\n", "1:1: output.dir: ", "required"},
		{"output.dir with a line break", "output: {dir: \"/run/a\\nb\"}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "1:15: output.dir: ", `contains a control character`},
		{"relative output.dir", "output: {dir: run/secrets}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "1:15: output.dir: ", "want an absolute path"},
		{"missing secrets", "output: {dir: /a}\n", "1:1: secrets: ", "required"},
		{"empty secrets", "output: {dir: /a}\nsecrets: []\n", "2:10: secrets: ", "want at least one secret"},
		{"mode not octal", "output: {dir: /a, mode: \"rw-r-----\"}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "1:25: output.mode: ", "want an octal mode"},
		{"two reload methods", minimal + "reload:\n  signal: {process: app}\n  exec: {command: [true]}\n", "6:9: reload: ", "set at most one of signal, http and exec"},
		{"signal without target", minimal + "reload:\n  signal: {name: SIGHUP}\n", "5:11: reload.signal: ", "set pid_file"},
		{"signal both targets", minimal + "reload:\n  signal: {pid_file: /run/a.pid, process: app}\n", "5:43: reload.signal.process: ", "not both"},
		{"signal process pattern that does not compile", minimal + "reload:\n  signal: {process: \"a(b\"}\n", "5:21: reload.signal.process: ", `"a(b" is neither an executable name nor a valid pattern: error parsing regexp: missing closing ): ` + "`a(b`" + ` (Go regexp syntax`},
		{"bad signal", minimal + "reload:\n  signal: {name: SIGKILL, process: app}\n", "5:18: reload.signal.name: ", "want one of SIGHUP"},
		{"exec empty", minimal + "reload:\n  exec: {command: []}\n", "5:19: reload.exec.command: ", "non-empty list"},
		{"http no url", minimal + "reload:\n  http: {method: POST}\n", "5:9: reload.http.url: ", "required"},
		{"http bad url", minimal + "reload:\n  http: {url: \"ftp://x\"}\n", "5:15: reload.http.url: ", "want an http:// or https:// URL"},
		{"max_wait below coalesce", minimal + "reload:\n  coalesce: 5s\n  max_wait: 1s\n", "6:13: reload.max_wait: ", "want max_wait (1s) >= coalesce (5s)"},
		{"status range", minimal + "reload:\n  http: {url: \"http://a/\", status_min: 300, status_max: 299}\n", "5:57: reload.http.status_max: ", ">= status_min"},
		{"auth unknown method", "output: {dir: /a}\nsources: {vault: {auth: {method: ldap}}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:34: sources.vault.auth.method: ", "want one of token, approle, kubernetes, jwt, aws"},
		{"auth field of other method", "output: {dir: /a}\nsources: {vault: {auth: {method: kubernetes, role: r, role_id_file: /r}}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:69: sources.vault.auth.role_id_file: ", "not used by auth method kubernetes, which takes jwt_file, mount, role"},
		{"auth missing field", "output: {dir: /a}\nsources: {vault: {auth: {method: jwt, role: r}}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:25: sources.vault.auth.jwt_file: ", "required by auth method jwt"},
		{"auth token mount", "output: {dir: /a}\nsources: {vault: {auth: {mount: x}}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:33: sources.vault.auth.mount: ", "not used by auth method token"},
		{"vault client cert alone", "output: {dir: /a}\nsources: {vault: {client_cert: /c.pem}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:32: sources.vault.client_key: ", "required with client_cert"},
		{"bad kv_version", "output: {dir: /a}\nsources: {vault: {kv_version: 3}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:31: sources.vault.kv_version: ", "from 0 to 2"},
		{"bad role arn", "output: {dir: /a}\nsources: {aws: {assume_role: {role_arn: \"arn:aws:iam::123:role/x\"}}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:41: sources.aws.assume_role.role_arn: ", "want an IAM role ARN"},
		{"role arn too long", "output: {dir: /a}\nsources: {aws: {assume_role: {role_arn: \"arn:aws:iam::123456789012:role/" + strings.Repeat("r", 513) + "\"}}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:41: sources.aws.assume_role.role_arn: ", "want an IAM role ARN"},
		{"session name too long", "output: {dir: /a}\nsources: {aws: {assume_role: {role_arn: \"arn:aws:iam::123456789012:role/x\", session_name: " + strings.Repeat("s", 65) + "}}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:91: sources.aws.assume_role.session_name: ", "2 to 64 characters"},
		{"session name too short", "output: {dir: /a}\nsources: {aws: {assume_role: {role_arn: \"arn:aws:iam::123456789012:role/x\", source_identity: s}}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:94: sources.aws.assume_role.source_identity: ", "2 to 64 characters"},
		{"assume duration", "output: {dir: /a}\nsources: {aws: {assume_role: {role_arn: \"arn:aws:iam::123456789012:role/x\", duration: 13h}}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:87: sources.aws.assume_role.duration: ", "from 15m to 12h"},
		{"assume_role without role_arn", "output: {dir: /a}\nsources: {aws: {assume_role: {external_id: abc}}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:30: sources.aws.assume_role.role_arn: ", "required: the role to assume"},
		{"bad credentials", "output: {dir: /a}\nsources: {aws: {credentials: env}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:30: sources.aws.credentials: ", "want imds"},
		{"bad region", "output: {dir: /a}\nsources: {aws: {region: Europe}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:25: sources.aws.region: ", "want an AWS region"},
		{"merge key", "base: &b {dir: /a}\noutput: {<<: *b}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "1:1: base: ", "unknown key"},
		{"bad newline", "output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\", newline: trim}]\n", "2:48: secrets[0].newline: ", "want keep, strip or add"},
		{"bad listen", minimal + "listen: localhost\n", "4:9: listen: ", "want HOST:PORT"},
		{"refresh below 1s", minimal + "refresh: 1ns\n", "4:10: refresh: ", `want at least 1s, got "1ns": every refresh is a request to the source (AWS bills per call)`},
		{"secret refresh below 1s", "output: {dir: /a}\nsecrets: [{name: A, ref: \"aws-sm://a\", refresh: 999ms}]\n", "2:49: secrets[0].refresh: ", "want at least 1s"},
		{"recheck below 1s", "output: {dir: /a}\nsources: {file: {recheck: 100ms}}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:27: sources.file.recheck: ", "want at least 1s"},
		{"file name too long", "output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\", file: " + strings.Repeat("f", 256) + "}]\n", "2:45: secrets[0].file: ", "(256 bytes) is longer than 255 bytes"},
		{"default file name too long", "output: {dir: /a}\nsecrets: [{name: " + strings.Repeat("N", 256) + ", ref: \"file:///a\"}]\n", "2:18: secrets[0].name: ", "the default file name, the lower-cased name \"nnn"},
		{"bundle name too long", "output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\", bundle: " + strings.Repeat("b", 256) + "}]\n", "2:47: secrets[0].bundle: ", "is longer than 255 bytes"},
		{"file name control", "output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\", file: \"a\\tb\"}]\n", "2:45: secrets[0].file: ", `file name "a\tb" contains a control character`},
		{"bundle name over 232 bytes", "output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\", bundle: " + strings.Repeat("b", 233) + "}]\n", "2:47: secrets[0].bundle: ", "is longer than 232 bytes"},
		{"bundle name DEL", "output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\", bundle: \"tls\\x7f\"}]\n", "2:47: secrets[0].bundle: ", "contains a control character"},
		{"bundle mixing a directory with another directory's file", "output: {dir: /a}\nsecrets:\n- {name: A, ref: \"file:///etc/tls/\", bundle: tls}\n- {name: B, ref: \"file:///etc/other/ca.crt\", bundle: tls}\n", "4:18: secrets[1].ref: ", `bundle "tls" reads the directory "/etc/tls/" (secrets[0], line 3), but ref "file:///etc/other/ca.crt" is in another directory`},
		{"renew_margin of 100%", "output: {dir: /a}\nsecrets: [{name: A, ref: \"vault://db/creds/app\", renew_margin: 100%}]\n", "2:64: secrets[0].renew_margin: ", "want a percentage of the lifetime above 0% and below 100%"},
		{"renew_margin beyond the ttl", "output: {dir: /a}\nsecrets: [{name: A, ref: \"vault://pki/issue/web?common_name=a.example&ttl=1h#certificate\", renew_margin: 2h}]\n", "2:106: secrets[0].renew_margin: ", "renew_margin 2h is not shorter than the certificate's ttl 1h0m0s"},
		{"renew_margin of 0%", "output: {dir: /a}\nsecrets: [{name: A, ref: \"vault://db/creds/app\", renew_margin: 0%}]\n", "2:64: secrets[0].renew_margin: ", "want a percentage of the lifetime above 0% and below 100%"},
		{"renew_margin not a duration", "output: {dir: /a}\nsecrets: [{name: A, ref: \"vault://db/creds/app\", renew_margin: soon}]\n", "2:64: secrets[0].renew_margin: ", `want a positive duration (such as "5m") or a percentage`},
		{"on_expiry unknown", "output: {dir: /a}\nsecrets: [{name: A, ref: \"vault://db/creds/app\", on_expiry: delete}]\n", "2:61: secrets[0].on_expiry: ", "want keep (leave an expired value in place) or remove"},
		{"on_expiry without expiry", "output: {dir: /a}\nsecrets: [{name: A, ref: \"aws-sm://db#password\", on_expiry: remove}]\n", "2:61: secrets[0].on_expiry: ", `ref "aws-sm://db#password" has no expiry`},
		{"splay above 1", "output: {dir: /a}\nsplay: 1.5\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:8: splay: ", "want a fraction of the refresh interval from 0"},
		{"splay negative", "output: {dir: /a}\nsplay: -0.1\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:8: splay: ", "want a number >= 0"},
		{"breaker cap below 1s", "output: {dir: /a}\nbreaker: {cap: 500ms}\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:16: breaker.cap: ", "want at least 1s"},
		{"vault rate_limit zero", "output: {dir: /a}\nsources: {vault: {rate_limit: 0}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:31: sources.vault.rate_limit: ", "want a positive number of requests per second"},
		{"vault rate_limit negative", "output: {dir: /a}\nsources: {vault: {rate_limit: -5}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:31: sources.vault.rate_limit: ", "want a number >= 0"},
		{"vault rate_burst without rate_limit", "output: {dir: /a}\nsources: {vault: {rate_burst: 5}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:31: sources.vault.rate_burst: ", "needs rate_limit"},
		{"supervise with signal", "output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\"}]\nreload: {signal: {process: x}, supervise: {signal: SIGHUP}}\n", "3:43: reload.supervise: ", "the app would be told twice, and run refuses it"},
		{"invalid UTF-8", "output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\xff\"}]\n", "2:36: ", "invalid UTF-8 (byte 0xff at offset 53)"},
		{"NUL byte", "output: {dir: /a}\n\x00\n", "2:1: ", "a NUL byte at offset 18"},
		{"readiness unknown", "output: {dir: /a}\nreadiness: lax\nsecrets: [{name: A, ref: \"file:///a\"}]\n", "2:12: readiness: ", "want strict"},
		{"approle without secret_id_file", "output: {dir: /a}\nsources: {vault: {auth: {method: approle, role_id_file: /r}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:25: sources.vault.auth.secret_id_file: ", "required by auth method approle: the absolute path of the file holding the secret ID"},
		{"wrapped without secret_id_file", "output: {dir: /a}\nsources: {vault: {auth: {method: approle, role_id_file: /r, wrapped_secret_id: true}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:25: sources.vault.auth.secret_id_file: ", "required by auth method approle"},
		{"aws auth without role", "output: {dir: /a}\nsources: {vault: {auth: {method: aws}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:25: sources.vault.auth.role: ", "required by auth method aws"},
		{"sts_region not a region", "output: {dir: /a}\nsources: {vault: {auth: {method: aws, role: r, sts_region: \"eu-west-1.evil.example\"}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:60: sources.vault.auth.sts_region: ", "want an AWS region such as eu-west-1, got \"eu-west-1.evil.example\""},
		{"sts_endpoint http to a remote host", "output: {dir: /a}\nsources: {vault: {auth: {method: aws, role: r, sts_region: eu-west-1, sts_endpoint: \"http://sts.example\"}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:85: sources.vault.auth.sts_endpoint: ", "want an https:// URL such as https://sts.eu-west-1.amazonaws.com (http:// only to 127.0.0.1"},
		{"sts_endpoint not a URL", "output: {dir: /a}\nsources: {vault: {auth: {method: aws, role: r, sts_region: eu-west-1, sts_endpoint: sts.eu-west-1.amazonaws.com}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:85: sources.vault.auth.sts_endpoint: ", "want an https:// URL"},
		{"sts_endpoint with a query", "output: {dir: /a}\nsources: {vault: {auth: {method: aws, role: r, sts_region: eu-west-1, sts_endpoint: \"https://sts.eu-west-1.amazonaws.com/?token=x\"}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:85: sources.vault.auth.sts_endpoint: ", "without credentials, query or fragment, got \"https://sts.eu-west-1.amazonaws.com/?token=REDACTED\""},
		{"sts_endpoint without sts_region", "output: {dir: /a}\nsources: {vault: {auth: {method: aws, role: r, sts_endpoint: \"https://sts.eu-west-1.amazonaws.com\"}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:62: sources.vault.auth.sts_region: ", "required with sts_endpoint"},
		{"sts_region for kubernetes", "output: {dir: /a}\nsources: {vault: {auth: {method: kubernetes, role: r, sts_region: eu-west-1}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n", "2:67: sources.vault.auth.sts_region: ", "not used by auth method kubernetes"},
		{"http url query redacted", minimal + "reload:\n  http: {url: \"ftp://h/r?token=x\"}\n", "5:15: reload.http.url: ", `got "ftp://h/r?token=REDACTED"`},
		{"empty ref field", "output: {dir: /a}\nsecrets: [{name: A, ref: \"vault://x/y#\"}]\n", "2:26: secrets[0].ref: ", "empty #field"},
		{"query after field", "output: {dir: /a}\nsecrets: [{name: A, ref: \"vault://kv/a#key?version=3\"}]\n", "2:26: secrets[0].ref: ", "put ?query before #field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("x.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("err = %T %v, want Errors", err, err)
			}
			first := strings.SplitN(err.Error(), "\n", 2)[0]
			if !strings.HasPrefix(first, "x.yaml:"+tt.want) || !strings.Contains(first, tt.msg) {
				t.Errorf("first error\n  %s\nwant prefix x.yaml:%s and %q; all:\n%v", first, tt.want, tt.msg, err)
			}
		})
	}
}

func TestParseReportsEverything(t *testing.T) {
	src := `output:
  dri: /run/secrets
refresh: 60
secrets:
  - name: 1BAD
    ref: vault://x
  - name: FOO
    ref: file:///a
  - name: FOO
    ref: file:///b
reload:
  max_wait: 1ms
`
	_, err := Parse("p.yaml", []byte(src))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v, want Errors", err)
	}
	want := []string{
		"p.yaml:2:3: output.dir: required",
		"p.yaml:2:3: output.dri: unknown key",
		"p.yaml:3:10: refresh: want a duration",
		"p.yaml:5:11: secrets[0].name: want a variable name",
		"p.yaml:6:10: secrets[0].ref: invalid ref",
		"p.yaml:9:11: secrets[2].name: duplicate secret name",
		"p.yaml:12:13: reload.max_wait: want max_wait",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) || len(es) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
	if es[0].File != "p.yaml" || es[0].Line != 2 || es[0].Column != 3 || es[0].Field != "output.dir" {
		t.Errorf("es[0] = %+v", *es[0])
	}
}

// Header values and URL credentials may be secrets; no message may carry
// them.
func TestErrorsNeverEchoCredentials(t *testing.T) {
	tests := []struct{ yaml, canary string }{
		{minimal + "reload:\n  http: {url: \"https://user:canary-pass@h/\"}\n", "canary-pass"},
		{minimal + "reload:\n  http: {url: \"https://user:canary-pass@[::1/\"}\n", "canary-pass"},
		{minimal + "reload:\n  http: {url: \"http://h/\", headers: {X-Token: \"canary-tok\\n\"}}\n", "canary-tok"},
		{minimal + "reload:\n  http: {url: \"http://h/\", headers: {X-Token: [canary-tok]}}\n", "canary-tok"},
		{"output: {dir: /a}\nsources: {vault: {token: canary-vault}}\nsecrets: [{name: A, ref: \"vault://a/b\"}]\n", "canary-vault"},
		{"output: {dir: /a}\nsources: {vault: {auth: {secret_id: canary-sid}}}\nsecrets: [{name: A, ref: \"vault://a/b\"}]\n", "canary-sid"},
		// A token in the query string or fragment, in a URL refused for
		// another reason.
		{minimal + "reload:\n  http: {url: \"ftp://h/r?token=SUPERSECRET\"}\n", "SUPERSECRET"},
		{minimal + "reload:\n  http: {url: \"http:///r?a=1&token=SUPERSECRET\"}\n", "SUPERSECRET"},
		{minimal + "reload:\n  http: {url: \"http://h/%zz?SUPERSECRET\"}\n", "SUPERSECRET"},
		{minimal + "reload:\n  http: {url: \"ftp://h/#SUPERSECRET\"}\n", "SUPERSECRET"},
		{minimal + "reload:\n  http: {url: \"https://u:SUPERSECRET@h/?token=SUPERSECRET\"}\n", "SUPERSECRET"},
		{minimal + "reload:\n  http: {url: \"https://u:SUPER/SECRET@h/\"}\n", "SUPER"},
		{minimal + "reload:\n  http: {url: \"SUPERSECRET@h/r\"}\n", "SUPERSECRET"},
		{"output: {dir: /a}\nsources: {vault: {address: \"vault.example?token=SUPERSECRET\"}}\nsecrets: [{name: A, ref: \"vault://a/b#c\"}]\n", "SUPERSECRET"},
	}
	for _, tt := range tests {
		_, err := Parse("x.yaml", []byte(tt.yaml))
		if err == nil {
			t.Errorf("Parse(%q) succeeded", tt.yaml)
			continue
		}
		if strings.Contains(err.Error(), tt.canary) {
			t.Errorf("error echoes %q:\n%v", tt.canary, err)
		}
	}
}

// The limits hold, and no further: a file name of exactly 255 bytes, a
// bundle name of 232, a refresh of
// exactly 1s, millisecond reload timings and a bundle member naming one
// field of an expanding ref all load.
func TestParseLimits(t *testing.T) {
	long := strings.Repeat("x", 255)
	src := "output: {dir: /a}\nrefresh: 1s\nsources: {file: {recheck: 1s}}\nsecrets:\n" +
		"  - {name: A, ref: \"file:///a\", bundle: " + long[:232] + ", file: " + long + ", refresh: 1s}\n" +
		"  - {name: " + strings.Repeat("B", 255) + ", ref: \"file:///b\"}\n" +
		"  - {name: C, ref: \"vault://kv/tls?split=true#crt\", bundle: tls}\n" +
		"  - {name: D, ref: \"vault://pki/issue/web?common_name=a.example#private_key\", bundle: tls}\n" +
		"  - {name: E, ref: \"vault://kv/tls?split=true\"}\n" +
		"  - {name: F, ref: \"aws-ssm:///app/?recursive=true\"}\n" +
		"  - {name: G, ref: \"file:///etc/tls/\"}\n" +
		"  - {name: H, ref: \"vault://kv/tls\", bundle: tls}\n" +
		"reload:\n  http: {url: \"http://127.0.0.1:1/r?token=t\", timeout: 250ms}\n  coalesce: 10ms\n  max_wait: 50ms\n"
	c, err := Parse("l.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Refresh != time.Second || c.Sources.File.Recheck != time.Second || c.Secrets[0].Refresh != time.Second {
		t.Errorf("refresh %v, recheck %v, secret refresh %v", c.Refresh, c.Sources.File.Recheck, c.Secrets[0].Refresh)
	}
	if c.Reload.Coalesce != 10*time.Millisecond || c.Reload.MaxWait != 50*time.Millisecond || c.Reload.HTTP.Timeout != 250*time.Millisecond {
		t.Errorf("reload = %+v, http = %+v", c.Reload, c.Reload.HTTP)
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse("d.yaml", []byte("output: {dir: /run/secrets/}\nsecrets:\n  - {name: Db_Password, ref: \"vault://secret/db#password\"}\n  - {name: KEY, ref: \"aws-sm://k\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:        "d.yaml",
		Output:      Output{Dir: "/run/secrets", Mode: 0o440, UID: -1, GID: -1},
		Listen:      ":9102",
		Refresh:     time.Minute,
		MaxFileSize: 1 << 20,
		Concurrency: 8, Readiness: "strict", Splay: 1, Breaker: Breaker{Threshold: 3, Cap: 5 * time.Minute},
		Sources: Sources{
			File:  File{Recheck: time.Minute},
			Vault: &Vault{Timeout: 30 * time.Second, Auth: VaultAuth{Method: "token"}},
			AWS:   &AWS{Credentials: "imds"},
		},
		Secrets: []Secret{
			{Name: "Db_Password", Ref: testenv.Ref(t, "vault://secret/db#password"), File: "db_password", Required: true, Refresh: time.Minute, MaxStale: 3 * time.Minute, Mode: 0o440, UID: -1, GID: -1, Newline: "keep", Reload: true, RenewMargin: Margin{Fraction: 0.1}, OnExpiry: "keep", Pos: Pos{3, 5}, RefPos: Pos{3, 30}},
			{Name: "KEY", Ref: testenv.Ref(t, "aws-sm://k"), File: "key", Required: true, Refresh: time.Minute, MaxStale: 3 * time.Minute, Mode: 0o440, UID: -1, GID: -1, Newline: "keep", Reload: true, RenewMargin: Margin{Fraction: 0.1}, OnExpiry: "keep", Pos: Pos{4, 5}, RefPos: Pos{4, 22}},
		},
		Reload: Reload{Coalesce: time.Second, MaxWait: 10 * time.Second, OnInitialSync: "auto",
			Supervise: Supervise{Signal: "SIGHUP", StopSignal: "SIGTERM", StopTimeout: 10 * time.Second}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	if got := c.Kinds(); !slices.Equal(got, []string{sources.Vault, sources.AWSSM}) {
		t.Errorf("Kinds() = %v", got)
	}
}

func TestParseFull(t *testing.T) {
	src := `output: {dir: /run/s, allow_disk: true, mode: "0400", uid: 10, gid: 20}
listen: "127.0.0.1:0"
refresh: 2m
max_stale: 1h
max_file_size: 64KiB
concurrency: 2
sources:
  file: {recheck: 10s}
  vault:
    address: https://v:8200
    auth: {method: kubernetes, role: app}
  aws: {region: eu-west-1, assume_role: {role_arn: "arn:aws-cn:iam::123456789012:role/a/b"}}
secrets:
  - {name: CERT, ref: "file:///c", bundle: tls, file: tls.crt, mode: "0444", uid: 0, gid: 0, newline: add}
  - {name: KEY, ref: "file:///k", bundle: tls, file: tls.key, required: false, reload: false, refresh: 30s, max_stale: 5m}
anchor: &x 1
reload:
  signal: {name: usr1, pid_file: /run/app.pid}
  coalesce: 2s
  max_wait: 2s
  on_initial_sync: true
`
	// "anchor" is an unknown key: check it is the only problem, then drop it.
	if _, err := Parse("f.yaml", []byte(src)); err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), `unknown key "anchor"`) {
		t.Fatalf("err = %v", err)
	}
	c, err := Parse("f.yaml", []byte(strings.Replace(src, "anchor: &x 1\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Output != (Output{Dir: "/run/s", AllowDisk: true, Mode: 0o400, UID: 10, GID: 20}) {
		t.Errorf("Output = %+v", c.Output)
	}
	if c.Listen != "127.0.0.1:0" || c.Refresh != 2*time.Minute || c.MaxStale != time.Hour || c.MaxFileSize != 64<<10 || c.Concurrency != 2 {
		t.Errorf("top level = %+v", c)
	}
	if c.Sources.File.Recheck != 10*time.Second {
		t.Errorf("Recheck = %v", c.Sources.File.Recheck)
	}
	if a := c.Sources.Vault.Auth; a.Method != "kubernetes" || a.Mount != "kubernetes" || a.Role != "app" || a.JWTFile != DefaultJWTFile {
		t.Errorf("Vault.Auth = %+v", a)
	}
	if r := c.Sources.AWS.AssumeRole; r.SessionName != "phase-sidecar" || r.Duration != time.Hour {
		t.Errorf("AssumeRole = %+v", r)
	}
	cert, key := c.Secrets[0], c.Secrets[1]
	if cert.Target() != "tls/tls.crt" || cert.Mode != 0o444 || cert.UID != 0 || cert.GID != 0 || cert.Newline != "add" || cert.MaxStale != time.Hour {
		t.Errorf("cert = %+v", cert)
	}
	if key.Required || key.Reload || key.Refresh != 30*time.Second || key.MaxStale != 5*time.Minute || key.Mode != fs.FileMode(0o400) || key.UID != 10 {
		t.Errorf("key = %+v", key)
	}
	if got := c.EnvName(cert); got != "CERT_FILE" {
		t.Errorf("EnvName = %q", got)
	}
	if got := c.TargetPath(key); got != "/run/s/tls/tls.key" {
		t.Errorf("TargetPath = %q", got)
	}
	if s := c.Reload.Signal; s == nil || s.Name != "SIGUSR1" || s.PIDFile != "/run/app.pid" || c.Reload.OnInitialSync != reload.OnInitialAlways {
		t.Errorf("Reload = %+v", c.Reload)
	}
	if got := c.Kinds(); !slices.Equal(got, []string{sources.File}) {
		t.Errorf("Kinds() = %v", got)
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1", 1}, {"1024", 1024}, {`"1MiB"`, 1 << 20}, {`"1 MiB"`, 1 << 20}, {`"512KiB"`, 512 << 10},
		{`"2MB"`, 2e6}, {`"1GiB"`, 1 << 30}, {`"10B"`, 10}, {`"3KB"`, 3000},
		{"0", -1}, {`"2GiB"`, -1}, {`"1.5MiB"`, -1}, {`"-1"`, -1}, {"true", -1}, {`"9223372036854775807GiB"`, -1},
	}
	for _, tt := range tests {
		c, err := Parse("s.yaml", []byte(minimal+"max_file_size: "+tt.in+"\n"))
		switch {
		case tt.want < 0 && err == nil:
			t.Errorf("%s: accepted as %d", tt.in, c.MaxFileSize)
		case tt.want >= 0 && err != nil:
			t.Errorf("%s: %v", tt.in, err)
		case tt.want >= 0 && c.MaxFileSize != tt.want:
			t.Errorf("%s = %d, want %d", tt.in, c.MaxFileSize, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || c.Path != p {
		t.Fatalf("Load = %v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}

func TestAliases(t *testing.T) {
	c, err := Parse("a.yaml", []byte("output: {dir: /a, uid: &id 1000, gid: *id}\nsecrets:\n  - &s {name: A, ref: \"file:///a\", gid: *id}\nreload: {exec: {command: &cmd [kill, -HUP, \"1\"]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Output.GID != 1000 || c.Secrets[0].GID != 1000 || !slices.Equal(c.Reload.Exec.Command, []string{"kill", "-HUP", "1"}) {
		t.Errorf("got %+v", c)
	}
}

// A source the program cannot use is reported at the ref, by index, together
// with the file's other problems; a source section with errors of its own
// is judged once they are fixed.
func TestAvailable(t *testing.T) {
	noVault := func(_ *Config, kind string) string {
		if kind == sources.Vault {
			return "built without it"
		}
		return ""
	}
	src := "output: {dir: /a}\nsecrets:\n  - {name: A, ref: \"file:///a\"}\n  - {name: B,  ref: \"vault://kv/b#x\"}\n  - {name: c-d, ref: \"file:///c\"}\n"
	_, err := ParseWith("a.yaml", []byte(src), Options{Available: noVault})
	want := "a.yaml:4:21: secrets[1].ref: source \"vault\" is not available in this build/config: built without it\n" +
		"a.yaml:5:12: secrets[2].name: want a variable name"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v\nwant prefix %s", err, want)
	}
	bad := "output: {dir: /a}\nsources: {vault: {address: \"ftp://x\"}}\nsecrets:\n  - {name: B, ref: \"vault://kv/b#x\"}\n"
	_, err = ParseWith("b.yaml", []byte(bad), Options{Available: noVault})
	if err == nil || strings.Contains(err.Error(), "not available") || !strings.Contains(err.Error(), "sources.vault.address") {
		t.Fatalf("err = %v, want only the address error", err)
	}
	// An error in another source's settings does not hide it.
	other := "output: {dir: /a}\nsources: {file: {recheck: 1ms}}\nsecrets:\n  - {name: B, ref: \"vault://kv/b#x\"}\n"
	_, err = ParseWith("d.yaml", []byte(other), Options{Available: noVault})
	if err == nil || !strings.Contains(err.Error(), "sources.file.recheck") || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("err = %v, want the recheck error and the availability error", err)
	}
	// sources itself wrong: no guess about Vault on top.
	_, err = ParseWith("e.yaml", []byte("output: {dir: /a}\nsources: 5\nsecrets:\n  - {name: B, ref: \"vault://kv/b#x\"}\n"), Options{Available: noVault})
	if err == nil || strings.Contains(err.Error(), "not available") {
		t.Fatalf("err = %v, want only the sources error", err)
	}
	if _, err := ParseWith("c.yaml", []byte("output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\"}]\n"), Options{Available: noVault}); err != nil {
		t.Fatal(err)
	}
}

// The hints look at the byte the parser stopped on, which non-ASCII text
// before it must not shift: a tab elsewhere on the line is not the problem.
func TestSyntaxHintPlacement(t *testing.T) {
	_, err := Parse("x.yaml", []byte("# éé\na:\tb: c\n"))
	if err == nil || strings.Contains(err.Error(), "tab") {
		t.Fatalf("err = %v, want no tab hint", err)
	}
}

func TestWarnings(t *testing.T) {
	c, err := Parse("x.yaml", []byte("output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\"}]\nreload: {signal: {name: SIGTERM, process: rqworker}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.HasPrefix(c.Warnings[0].Error(), "x.yaml:3:43: reload.signal.process: ") || !strings.Contains(c.Warnings[0].Error(), `such as "manage.py rqworker"`) {
		t.Errorf("warnings = %v", c.Warnings)
	}
	for in, want := range map[string]string{"true": reload.OnInitialAlways, "false": reload.OnInitialAuto, "never": reload.OnInitialNever, "auto": reload.OnInitialAuto} {
		c, err := Parse("x.yaml", []byte("output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\"}]\nreload: {on_initial_sync: "+in+"}\n"))
		if err != nil || c.Reload.OnInitialSync != want {
			t.Errorf("on_initial_sync %s: %v, %v; want %s", in, c, err, want)
		}
	}
}

func TestTemplates(t *testing.T) {
	dir := t.TempDir()
	tf := filepath.Join(dir, "url.tmpl")
	if err := os.WriteFile(tf, []byte("postgres://{{ secret \"U\" }}@db\n{{ nosuch }}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.tmpl")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 2048), 0o600); err != nil {
		t.Fatal(err)
	}
	head := "output: {dir: /a}\nsecrets:\n- {name: U, ref: \"vault://db/creds/app#username\", write: false}\n"
	for _, tc := range []struct{ name, yaml, wantPrefix, want string }{
		{"ref and template", head + "- {name: URL, ref: \"file:///a\", template: \"{{ secret \\\"U\\\" }}\"}\n", "4:20: secrets[1].ref: ", "a secret has a ref or a template, not both"},
		{"template and template_file", head + "- {name: URL, template: \"{{ secret \\\"U\\\" }}\", template_file: " + tf + "}\n", "4:62: secrets[1].template_file: ", "set template or template_file, not both"},
		{"neither", head + "- {name: URL}\n", "4:3: secrets[1].ref: ", "(or a template: rendered from other secrets)"},
		{"unreadable template_file", head + "- {name: URL, template_file: /nonexistent/t}\n", "4:30: secrets[1].template_file: ", `cannot read template_file "/nonexistent/t"`},
		{"template_file over max_file_size", "max_file_size: 1024\n" + head + "- {name: URL, template_file: " + big + "}\n", "5:30: secrets[1].template_file: ", "larger than max_file_size (1024 bytes)"},
		{"unknown function in template_file", head + "- {name: URL, template_file: " + tf + "}\n", tf + ":2:1: secrets[1].template_file: ", `secret URL: template: function "nosuch" not defined`},
		{"unknown secret, inline", head + "- {name: URL, template: \"x {{ secret \\\"NOPE\\\" }}\"}\n", "4:31: secrets[1].template: ", `secret URL: template: secret "NOPE" is not configured`},
		{"unknown secret, block", head + "- name: URL\n  template: |\n    line one\n    {{ secret \"U\" }} {{ secret \"NOPE\" }}\n", "7:25: secrets[1].template: ", `secret "NOPE" is not configured`},
		{"unknown secret, folded block", head + "- name: URL\n  template: >-\n    postgresql://{{ secret \"U\" | urlencode }}:\n    {{ secret \"NOPE\" }}@h/db\n", "7:8: secrets[1].template: ", `secret "NOPE" is not configured`},
		{"unknown secret, escapes in double quotes", head + "- {name: B, template: \"x\\\"{{ secret \\\"NOPE\\\" }}\"}\n", "4:30: secrets[1].template: ", `secret "NOPE" is not configured`},
		{"cycle", head + "- {name: A, template: \"{{ secret \\\"B\\\" }}{{ secret \\\"U\\\" }}\"}\n- {name: B, template: \"{{ secret \\\"A\\\" }}\"}\n", "4:23: secrets[1].template: ", "templates read each other in a cycle (A → B → A)"},
		{"reads itself", head + "- {name: A, template: \"{{ secret \\\"A\\\" }}\"}\n", "4:27: secrets[1].template: ", "secret A: template: reads itself"},
		{"reads no secret", head + "- {name: A, template: \"static\"}\n", "4:23: secrets[1].template: ", "the template reads no secret"},
		{"format on a field", head + "- {name: A, ref: \"vault://s/a#b\", format: dotenv}\n", "4:43: secrets[1].format: ", `format renders a whole object, but ref "vault://s/a#b" selects field "b"`},
		{"format unknown", head + "- {name: A, ref: \"vault://s/a\", format: toml}\n", "4:41: secrets[1].format: ", "want json, dotenv or yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("parse succeeded")
			}
			first := strings.Split(err.Error(), "\n")[0]
			prefix := tc.wantPrefix
			if !strings.HasPrefix(prefix, "/") {
				prefix = "x.yaml:" + prefix
			}
			if !strings.Contains(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %s\nwant %s…%s", err, prefix, tc.want)
			}
			_ = first
		})
	}
	c, err := Parse("x.yaml", []byte(head+"- {name: URL, template: \"postgres://{{ secret \\\"U\\\" | urlencode }}@db\"}\n- {name: UNUSED, ref: \"vault://s/x#y\", write: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Secrets[1].Inputs; len(got) != 1 || got[0] != "U" || c.Secrets[1].Source() != "template" {
		t.Errorf("inputs %v, source %s", got, c.Secrets[1].Source())
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0].Error(), "x.yaml:5:") || !strings.Contains(c.Warnings[0].Error(), "secret UNUSED is input only (write: false) but no template reads it") {
		t.Errorf("warnings = %v", c.Warnings)
	}
	c, err = Parse("x.yaml", []byte(head+"- {name: URL, template_file: "+filepath.Join(dir, "ok.tmpl")+"}\n"))
	if err == nil {
		t.Fatal("missing template file accepted")
	}
	_ = c
}

// TestManyErrorsCapped: 40 000 duplicate names are all found, and the
// message lists the first MaxReported and says how many more there are.
func TestManyErrorsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("output: {dir: /a}\nsecrets:\n")
	for range 40000 {
		b.WriteString("- {name: A, ref: \"file:///a\"}\n")
	}
	_, err := Parse("x.yaml", []byte(b.String()))
	var es Errors
	if !errors.As(err, &es) || len(es) < 39999 {
		t.Fatalf("found %d problems", len(es))
	}
	msg := err.Error()
	if n := strings.Count(msg, "\n"); n != MaxReported {
		t.Errorf("%d lines, want %d and a summary", n+1, MaxReported+1)
	}
	if !strings.HasSuffix(msg, fmt.Sprintf("and %d more problem(s)", len(es)-MaxReported)) {
		t.Errorf("message ends %q", msg[len(msg)-60:])
	}
}

// TestVaultAWSSTS: the aws login's STS settings are carried as given;
// http is accepted only to this host.
func TestVaultAWSSTS(t *testing.T) {
	for _, endpoint := range []string{"https://sts.us-gov-west-1.amazonaws.com", "https://vpce-0a1b.sts.eu-west-1.vpce.amazonaws.com/", "http://127.0.0.1:4566", "http://localhost:4566/", "http://[::1]:4566"} {
		y := "output: {dir: /a}\nsources: {vault: {auth: {method: aws, role: r, sts_region: us-gov-west-1, sts_endpoint: \"" + endpoint + "\"}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n"
		c, err := Parse("x.yaml", []byte(y))
		if err != nil {
			t.Errorf("%s: %v", endpoint, err)
			continue
		}
		if a := c.Sources.Vault.Auth; a.STSRegion != "us-gov-west-1" || a.STSEndpoint != endpoint {
			t.Errorf("%s: auth %+v", endpoint, a)
		}
	}
	c, err := Parse("x.yaml", []byte("output: {dir: /a}\nsources: {vault: {auth: {method: aws, role: r}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Sources.Vault.Auth; a.STSRegion != "" || a.STSEndpoint != "" {
		t.Errorf("defaults: auth %+v, want both empty (the source's default: the global endpoint)", a)
	}
}
