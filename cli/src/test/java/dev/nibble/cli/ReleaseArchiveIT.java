package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

/**
 * The roff man pages (target/man/man1) and the release archive (target/nibble-VERSION.tar.gz) that {@code mvn package}
 * builds. Both exist only after package, so failsafe runs this in integration-test ({@code mvn verify}); a missing
 * page or archive is a failure, not a skip.
 */
class ReleaseArchiveIT {

    private static final String VERSION = property("nibble.version");
    private static final Path TARGET = Path.of(property("nibble.buildDirectory"));
    private static final Path MAN1 = TARGET.resolve("man/man1");
    private static final Path ARCHIVE = TARGET.resolve("nibble-" + VERSION + ".tar.gz");
    private static final String TOP = "nibble-" + VERSION + "/";

    @TempDir
    Path dir;

    @Test
    void everyCommandHasARoffPageWithItsTitleAndOptions() throws IOException {
        Map<String, CommandSpec> pages = pages();
        assertTrue(pages.keySet().containsAll(List.of("nibble", "nibble-generate", "nibble-chat", "nibble-serve")),
                pages.keySet().toString());
        Set<String> built = new TreeSet<>();
        try (var files = Files.list(MAN1)) {
            files.forEach(f -> built.add(f.getFileName().toString()));
        }
        assertEquals(new TreeSet<>(pages.keySet().stream().map(p -> p + ".1").toList()), built);
        for (Map.Entry<String, CommandSpec> page : pages.entrySet()) {
            String roff = Files.readString(MAN1.resolve(page.getKey() + ".1"));
            String th = roff.lines().filter(l -> !l.startsWith(".\\\"") && !l.startsWith("'\\\"")).findFirst().orElse("");
            assertTrue(th.startsWith(".TH \"" + roff(page.getKey().toUpperCase(Locale.ROOT)) + "\" \"1\" ")
                    && th.contains("\"nibble " + roff(VERSION) + "\""), page.getKey() + ": " + th);
            for (OptionSpec option : page.getValue().options()) {
                if (!option.hidden()) {
                    for (String name : option.names()) {
                        assertTrue(roff.contains(roff(name)), page.getKey() + ".1 lacks " + name);
                    }
                }
            }
        }
        String generate = Files.readString(MAN1.resolve("nibble-generate.1"));
        assertTrue(generate.contains("\\fB\\-\\-ctx") && generate.contains("\\-\\-ctx\\-size"), generate);
    }

    @Test
    void theArchiveHoldsTheLauncherTheJarTheManPagesTheReadmeAndTheLicense() throws IOException {
        Map<String, Entry> entries = new LinkedHashMap<>();
        for (Entry e : entries()) {
            entries.put(e.name(), e);
            assertTrue(e.name().startsWith(TOP), e.name() + " is outside " + TOP);
        }
        Entry launcher = entries.get(TOP + "bin/nibble");
        assertTrue(launcher != null && launcher.isFile(), entries.keySet().toString());
        assertEquals(0755, launcher.mode() & 0777, "bin/nibble's mode " + Integer.toOctalString(launcher.mode()));
        assertTrue(new String(launcher.content(), StandardCharsets.UTF_8).startsWith("#!/bin/sh\n"));
        Entry jar = entries.get(TOP + "lib/nibble.jar");
        assertTrue(jar != null && jar.isFile(), entries.keySet().toString());
        assertEquals(Files.size(TARGET.resolve("nibble.jar")), jar.content().length, "lib/nibble.jar is the shaded jar");
        for (String file : List.of("README.md", "LICENSE", "man/man1/nibble.1", "man/man1/nibble-generate.1")) {
            assertTrue(entries.containsKey(TOP + file) && entries.get(TOP + file).isFile(), file + " missing: " + entries.keySet());
        }
        for (String page : pages().keySet()) {
            Entry e = entries.get(TOP + "man/man1/" + page + ".1");
            assertTrue(e != null && Arrays.equals(e.content(), Files.readAllBytes(MAN1.resolve(page + ".1"))), page + ".1");
        }
    }

    @Test
    void theLauncherRunsTheJarWithJava22OrNewerAndRefusesAnOlderOneInOneLine() throws Exception {
        // Unpacked as tar would: the launcher and the jar, modes from the archive.
        Path root = dir.resolve("unpacked");
        for (Entry e : entries()) {
            if (e.isFile() && (e.name().endsWith("/bin/nibble") || e.name().endsWith("/lib/nibble.jar"))) {
                Path to = root.resolve(e.name());
                Files.createDirectories(to.getParent());
                Files.write(to, e.content());
                Files.setPosixFilePermissions(to, PosixFilePermissions.fromString(rwx(e.mode())));
            }
        }
        Path launcher = root.resolve(TOP + "bin/nibble");

        Run version = run(launcher, Map.of("JAVA_HOME", System.getProperty("java.home")), "--version");
        assertEquals(0, version.code, version.err);
        assertTrue(version.out.startsWith("nibble ") && version.out.contains("Java "), version.out);

        // A Java 17 on PATH (no JAVA_HOME), and one in JAVA_HOME: one line each, exit code 1, the jar not run.
        Path old = dir.resolve("jdk17");
        Files.createDirectories(old.resolve("bin"));
        Path java = old.resolve("bin/java");
        Files.writeString(java, "#!/bin/sh\necho '    java.specification.version = 17' >&2\n");
        Files.setPosixFilePermissions(java, PosixFilePermissions.fromString("rwxr-xr-x"));
        Run onPath = run(launcher, Map.of("PATH", old.resolve("bin") + ":/usr/bin:/bin"), "--version");
        assertEquals(1, onPath.code);
        assertEquals("nibble: java is Java 17; nibble needs Java 22 or newer: install one or set JAVA_HOME to one\n",
                onPath.err);
        assertEquals("", onPath.out);
        Run inHome = run(launcher, Map.of("JAVA_HOME", old.toString()), "--version");
        assertEquals(1, inHome.code);
        assertTrue(inHome.err.startsWith("nibble: " + java + " is Java 17;") && inHome.err.lines().count() == 1,
                inHome.err);

        Run none = run(launcher, Map.of("JAVA_HOME", dir.resolve("no-such-jdk").toString()), "--version");
        assertEquals(1, none.code);
        assertTrue(none.err.startsWith("nibble: no java found") && none.err.lines().count() == 1, none.err);
    }

    /** The page name (nibble, nibble-generate, ...) of nibble and of each command under it, as ManPageGenerator names them. */
    private static Map<String, CommandSpec> pages() {
        Map<String, CommandSpec> pages = new LinkedHashMap<>();
        List<CommandSpec> todo = new ArrayList<>(List.of(Nibble.commandLine(Map.of()).getCommandSpec()));
        Map<CommandSpec, Boolean> seen = new IdentityHashMap<>();
        while (!todo.isEmpty()) {
            CommandSpec spec = todo.removeFirst();
            if (seen.put(spec, true) == null && !spec.usageMessage().hidden()) {
                pages.put(spec.qualifiedName("-"), spec);
                spec.subcommands().values().forEach(sub -> todo.add(sub.getCommandSpec()));
            }
        }
        return pages;
    }

    /** One entry of the archive: {@code type} '0' is a file, '5' a folder. */
    private record Entry(String name, int mode, char type, byte[] content) {
        boolean isFile() {
            return type == '0' || type == 0;
        }
    }

    /**
     * The entries of the archive, read as ustar (512-byte headers: name, octal mode and size, type, prefix). Its names
     * are short, so the assembly plugin writes no extended (pax) headers; one would show up as an entry of type 'x',
     * outside the top folder.
     */
    private static List<Entry> entries() throws IOException {
        assertTrue(Files.isRegularFile(ARCHIVE), ARCHIVE + " is missing: mvn package builds it");
        List<Entry> entries = new ArrayList<>();
        try (InputStream in = new GZIPInputStream(Files.newInputStream(ARCHIVE))) {
            for (byte[] header = in.readNBytes(512); header.length == 512 && header[0] != 0; header = in.readNBytes(512)) {
                String name = field(header, 0, 100);
                String prefix = field(header, 345, 155);
                long size = Long.parseLong(field(header, 124, 12).trim(), 8);
                byte[] content = in.readNBytes(Math.toIntExact(size));
                in.readNBytes((int) (-size & 511)); // padding to the next block
                entries.add(new Entry(prefix.isEmpty() ? name : prefix + "/" + name,
                        Integer.parseInt(field(header, 100, 8).trim(), 8), (char) header[156], content));
            }
        }
        return entries;
    }

    private static String field(byte[] header, int offset, int length) {
        int end = offset;
        while (end < offset + length && header[end] != 0) {
            end++;
        }
        return new String(header, offset, end - offset, StandardCharsets.UTF_8);
    }

    /** Text as Asciidoctor's manpage backend writes it: hyphens escaped. */
    private static String roff(String text) {
        return text.replace("-", "\\-");
    }

    private static String rwx(int mode) {
        StringBuilder s = new StringBuilder();
        for (int bit = 8; bit >= 0; bit--) {
            s.append((mode & (1 << bit)) == 0 ? '-' : "rwx".charAt(2 - bit % 3));
        }
        return s.toString();
    }

    private record Run(int code, String out, String err) {
    }

    private Run run(Path launcher, Map<String, String> env, String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of(launcher.toString()));
        command.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(command).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        pb.environment().remove("JAVA_HOME");
        pb.environment().remove("NIBBLE_JAVA_OPTS");
        pb.environment().putAll(env);
        Process p = pb.start();
        byte[] out;
        byte[] err;
        try (InputStream o = p.getInputStream(); InputStream e = p.getErrorStream()) {
            // Small outputs (a version, one line): reading one stream after the other cannot fill a pipe.
            out = o.readAllBytes();
            err = e.readAllBytes();
        }
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the launcher did not finish");
        return new Run(p.exitValue(), new String(out, StandardCharsets.UTF_8), new String(err, StandardCharsets.UTF_8));
    }

    private static String property(String name) {
        String value = System.getProperty(name);
        assertFalse(value == null || value.isEmpty(), name + " is not set: this test runs from the cli module's build (failsafe)");
        return value;
    }
}
