"""Facts about this host, each read in one place: the cgroup file system (`cgroupfs`), tracefs
(`tracefs`), the kernel's BTF (`btf`), its build configuration (`kconfig`) and BCC (`bcc`).

probes/, tracer/ and doctor/ ask these modules, so the recorder and `uvmtrace doctor` see the
same host. analysis/ never imports them: it reads only the recording."""
