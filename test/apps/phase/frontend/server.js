// Stands in for the Next.js server: like next start and the standalone
// server.js, it retitles itself "next-server (vX)", which replaces both its
// comm and its command line. It prints each signal it gets; SIGTERM ends
// it, as it ends Next.js.
process.title = "next-server (v14.2.35)";
for (const sig of ["SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2"]) {
  process.on(sig, () => {
    console.log(`server got ${sig}`);
    if (sig === "SIGTERM") process.exit(0);
  });
}
setInterval(() => {}, 1 << 30);
console.log(`server ready ${process.pid}`);
