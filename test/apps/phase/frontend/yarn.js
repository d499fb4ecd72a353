// Stands in for yarn start in Phase's frontend image: a node process that
// runs the start script through sh -c and waits for it. It prints each
// signal it gets and exits with the script's code.
const { spawn } = require("child_process");
const path = require("path");

const child = spawn("sh", ["-c", `node ${path.join(__dirname, "server.js")}`], { stdio: "inherit" });
for (const sig of ["SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2"]) {
  process.on(sig, () => console.log(`yarn got ${sig}`));
}
child.on("exit", (code, signal) => process.exit(code === null ? 128 : code));
