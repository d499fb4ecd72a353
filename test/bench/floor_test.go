package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkWriteProtocolFloor10000 measures the least the write protocol of
// the sink costs for the 10 000 files of BenchmarkOnce10000, with nothing
// else: no process start, no config, no engine, no metrics. Each file is read
// (open, fstat, read, close) and published the way the sink must publish it:
// a temporary file created in the output directory, write, fchmod, fsync,
// close, rename over the target, fsync of the directory, one worker per CPU.
//
//   - raw: bare system calls on the directory descriptor, the cheapest the
//     protocol can be;
//   - root: through an os.Root, as the sink does (os.Root's Rename looks the
//     target up first, and its files register with the poller).
//
// Both report their time against cp -r of the same files: the once/cp bar
// cannot be lower than floor/cp.
func BenchmarkWriteProtocolFloor10000(b *testing.B) {
	_, src, out, _ := setup(b, 10000, "")
	names := make([]string, 10000)
	for i := range names {
		names[i] = fmt.Sprintf("secret_%05d", i)
	}
	for _, v := range []struct {
		name    string
		publish func(b *testing.B, out string, names []string, src string)
	}{{"raw", publishRaw}, {"root", publishRoot}} {
		b.Run(v.name, func(b *testing.B) {
			cpOut := out + "-cp"
			var floor, cp time.Duration
			for range b.N {
				os.RemoveAll(out)
				os.RemoveAll(cpOut)
				if err := os.Mkdir(out, 0o755); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if o, err := exec.Command("cp", "-r", src, cpOut).CombinedOutput(); err != nil {
					b.Fatalf("cp: %v %s", err, o)
				}
				cp += time.Since(t0)
				t0 = time.Now()
				v.publish(b, out, names, src)
				floor += time.Since(t0)
			}
			b.ReportMetric(floor.Seconds()*1000/float64(b.N), "floor-ms")
			b.ReportMetric(cp.Seconds()*1000/float64(b.N), "cp-ms")
			b.ReportMetric(floor.Seconds()/cp.Seconds(), "floor/cp")
		})
	}
}

// parallel runs one worker per CPU over names.
func parallel(b *testing.B, names []string, work func(buf []byte, name string) error) {
	var wg sync.WaitGroup
	next := make(chan string, 64)
	var once sync.Once
	var first error
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for name := range next {
				if err := work(buf, name); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for _, n := range names {
		next <- n
	}
	close(next)
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
}

func readRaw(buf []byte, path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	n, err := unix.Read(fd, buf[:min(int(st.Size)+1, len(buf))])
	return buf[:max(n, 0)], err
}

func publishRaw(b *testing.B, out string, names []string, src string) {
	dir, err := unix.Open(out, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(dir)
	parallel(b, names, func(buf []byte, name string) error {
		data, err := readRaw(buf, filepath.Join(src, name))
		if err != nil {
			return err
		}
		tmp := ".tmp-" + name
		fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		_, err = unix.Write(fd, data)
		if err == nil {
			err = unix.Fchmod(fd, 0o440)
		}
		if err == nil {
			err = unix.Fsync(fd)
		}
		unix.Close(fd)
		if err == nil {
			err = unix.Renameat(dir, tmp, dir, "t"+name)
		}
		if err == nil {
			err = unix.Fsync(dir)
		}
		return err
	})
}

func publishRoot(b *testing.B, out string, names []string, src string) {
	root, err := os.OpenRoot(out)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	self, err := root.Open(".")
	if err != nil {
		b.Fatal(err)
	}
	defer self.Close()
	parallel(b, names, func(buf []byte, name string) error {
		data, err := readRaw(buf, filepath.Join(src, name))
		if err != nil {
			return err
		}
		tmp := ".tmp-" + name
		f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Chmod(0o440)
		}
		if err == nil {
			err = f.Sync()
		}
		f.Close()
		if err == nil {
			err = root.Rename(tmp, "t"+name)
		}
		if err == nil {
			err = self.Sync()
		}
		return err
	})
}
