package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.kernels.NativeLibrary;
import dev.nibble.runtime.LanguageModel;
import dev.nibble.testing.TestData;
import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * nibble as a dependency (issue 12 item 7): {@code test-projects/consumer}, a project outside the build, is built by
 * Maven against nibble's coordinates (the BOM imported, {@code nibble-runtime} without a version) and run, once on the
 * class path and once with nibble's jars on the module path, where {@code --enable-native-access} names its modules.
 *
 * <p>{@code mvn verify} installs nothing, so the test fills a local repository of its own (under {@code target/}) with
 * the parent pom, the BOM and the jars this test runs with (the reactor's, or a jar made from {@code target/classes}
 * under {@code mvn test}); everything else (plugins, Jackson, jinjava) comes from this build's local repository,
 * mirrored as a {@code file:} repository, so no network is needed.
 */
class ConsumerProjectTest {

    /** What the root pom leaves out of jinjava's and jline's dependencies: never on a consumer's class path. */
    private static final List<String> LEFT_OUT = List.of("commons-net", "javassist", "snakeyaml", "java-ipv6", "big-math",
            "checker-qual", "jline");

    @Test
    void buildsAndRunsAProjectThatDependsOnNibbleByCoordinates() throws Exception {
        Path mvn = onPath("mvn");
        assumeTrue(mvn != null, "mvn is not on the PATH");
        Path root = TestData.root().getParent();
        String version = System.getProperty("nibble.version", projectVersion(root));
        assertEquals(version, pomVersion(root.resolve("bom/pom.xml"), "nibble-bom"),
                "bom/pom.xml (no parent, on purpose) must carry the project's version");
        Path work = Path.of("target", "consumer-test").toAbsolutePath();
        Path repo = work.resolve("repo");
        deleteTree(repo.resolve("dev/nibble"));
        deleteTree(work.resolve("project"));

        // nibble's artifacts: the poms, and the jars this very test runs with.
        install(repo, "nibble-parent", version, root.resolve("pom.xml"), null);
        install(repo, "nibble-bom", version, root.resolve("bom/pom.xml"), null);
        for (Class<?> inModule : List.of(NativeLibrary.class, GgufFile.class, LanguageModel.class)) {
            installModuleOf(inModule, repo, version, work);
        }
        // Everything else from this build's own local repository, as a file: mirror of every remote repository.
        Path outerRepo = Path.of(System.getProperty("nibble.localRepository",
                System.getProperty("user.home") + "/.m2/repository"));
        Path settings = work.resolve("settings.xml");
        Files.writeString(settings, """
                <settings>
                  <mirrors>
                    <mirror><id>nibble-build-repository</id><mirrorOf>*</mirrorOf><url>%s</url></mirror>
                  </mirrors>
                </settings>
                """.formatted(outerRepo.toUri()));
        Path project = work.resolve("project");
        copyTree(root.resolve("test-projects/consumer"), project);

        Run build = run(work, List.of(mvn.toString(), "-B", "-q", "-s", settings.toString(),
                "-Dmaven.repo.local=" + repo, "-Dnibble.version=" + version, "-Dmaven.test.skip=true",
                "-f", project.resolve("pom.xml").toString(), "package"), 240);
        assertEquals(0, build.exitCode(), () -> "the consumer project did not build:\n" + build.out() + build.err());

        // What Maven resolved for it, from the jar's manifest (Class-Path, in the local repository's layout).
        Path jar = project.resolve("target/nibble-consumer-1.0.jar");
        List<String> modulePath = new ArrayList<>();
        List<String> classPath = new ArrayList<>(List.of(jar.toString()));
        try (JarFile jarFile = new JarFile(jar.toFile())) {
            for (String entry : jarFile.getManifest().getMainAttributes().getValue("Class-Path").split(" ")) {
                for (String leftOut : LEFT_OUT) {
                    assertFalse(entry.contains(leftOut), () -> entry + " is on the consumer's class path");
                }
                (entry.startsWith("dev/nibble/") ? modulePath : classPath).add(repo.resolve(entry).toString());
            }
        }
        assertEquals(3, modulePath.size(), () -> "nibble's jars: " + modulePath);
        String model = TestData.resolve("tiny-llama.q8_0.gguf").toString();
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();

        List<String> all = new ArrayList<>(classPath);
        all.addAll(modulePath);
        Run onClassPath = run(work, List.of(java, "--enable-native-access=ALL-UNNAMED", "-cp",
                String.join(File.pathSeparator, all), "dev.nibble.consumer.Main", model), 120);
        assertRan(onClassPath, "null");

        // On the module path the jars are automatic modules named by their manifests; only those two make downcalls.
        Run onModulePath = run(work, List.of(java, "--module-path", String.join(File.pathSeparator, modulePath),
                "--add-modules", "dev.nibble.runtime", "--enable-native-access=dev.nibble.kernels,dev.nibble.runtime",
                "--illegal-native-access=deny", "-cp", String.join(File.pathSeparator, classPath),
                "dev.nibble.consumer.Main", model), 120);
        assertRan(onModulePath, "dev.nibble.runtime");
        assertEquals(onClassPath.out(), onModulePath.out().replace("module: dev.nibble.runtime", "module: null"));
    }

    private static void assertRan(Run run, String module) {
        assertEquals(0, run.exitCode(), () -> run.out() + run.err());
        assertTrue(run.out().contains("generated 16 tokens: "), run.out());
        assertTrue(run.out().contains("answered "), run.out());
        assertTrue(run.out().contains("nibble module: " + module), run.out());
        // No JVM warning (native access) and no SLF4J one (the project has a provider); the JVM's own note about
        // JAVA_TOOL_OPTIONS and the like, which a CI machine may set, aside.
        assertEquals("", run.err().replaceAll("(?m)^Picked up .*\\R", ""), "stderr");
    }

    /** Copies the module holding {@code inModule} (its jar and pom) into the repository as version {@code version}. */
    private static void installModuleOf(Class<?> inModule, Path repo, String version, Path work)
            throws IOException, URISyntaxException {
        Path location = Path.of(inModule.getProtectionDomain().getCodeSource().getLocation().toURI());
        Path pom;
        Path jar;
        if (Files.isDirectory(location)) {
            // mvn test: target/classes, not yet a jar.
            pom = location.getParent().getParent().resolve("pom.xml");
            jar = work.resolve(location.getParent().getParent().getFileName() + ".jar");
            jarOf(location, jar, moduleName(pom));
        } else if (location.getParent().getFileName().toString().equals("target")) {
            pom = location.getParent().getParent().resolve("pom.xml");
            jar = location;
        } else {
            pom = Path.of(location.toString().replaceFirst("\\.jar$", ".pom"));
            jar = location;
        }
        String artifactId = artifactId(pom);
        install(repo, artifactId, version, pom, jar);
    }

    private static void install(Path repo, String artifactId, String version, Path pom, Path jar) throws IOException {
        Path dir = repo.resolve("dev/nibble").resolve(artifactId).resolve(version);
        Files.createDirectories(dir);
        Files.copy(pom, dir.resolve(artifactId + "-" + version + ".pom"), StandardCopyOption.REPLACE_EXISTING);
        if (jar != null) {
            Files.copy(jar, dir.resolve(artifactId + "-" + version + ".jar"), StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /** A jar of a classes folder, with the module name the jar plugin would give it. */
    private static void jarOf(Path classes, Path jar, String moduleName) throws IOException {
        Manifest manifest = new Manifest();
        manifest.getMainAttributes().put(Attributes.Name.MANIFEST_VERSION, "1.0");
        manifest.getMainAttributes().putValue("Automatic-Module-Name", moduleName);
        try (OutputStream file = Files.newOutputStream(jar);
                JarOutputStream out = new JarOutputStream(file, manifest);
                Stream<Path> files = Files.walk(classes)) {
            for (Path f : files.filter(Files::isRegularFile).sorted().toList()) {
                out.putNextEntry(new JarEntry(classes.relativize(f).toString().replace(File.separatorChar, '/')));
                Files.copy(f, out);
                out.closeEntry();
            }
        }
    }

    private static String artifactId(Path pom) throws IOException {
        // The module's own artifactId: the first one after the parent element.
        String text = Files.readString(pom);
        Matcher m = Pattern.compile("</parent>\\s*<artifactId>([^<]+)</artifactId>").matcher(text);
        assertTrue(m.find(), pom + " has no artifactId after its parent");
        return m.group(1);
    }

    private static String moduleName(Path pom) throws IOException {
        Matcher m = Pattern.compile("<nibble.moduleName>([^<]+)</nibble.moduleName>").matcher(Files.readString(pom));
        assertTrue(m.find(), pom + " sets no nibble.moduleName");
        return m.group(1);
    }

    private static String projectVersion(Path root) throws IOException {
        return pomVersion(root.resolve("pom.xml"), "nibble-parent");
    }

    private static String pomVersion(Path pom, String artifactId) throws IOException {
        Matcher m = Pattern.compile("<artifactId>" + artifactId + "</artifactId>\\s*<version>([^<]+)</version>")
                .matcher(Files.readString(pom));
        assertTrue(m.find(), pom + " has no version for " + artifactId);
        return m.group(1);
    }

    private record Run(int exitCode, String out, String err) {
    }

    private static Run run(Path dir, List<String> command, int timeoutSeconds) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile());
        pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
        Path out = Files.createTempFile(dir, "out", ".txt");
        Path err = Files.createTempFile(dir, "err", ".txt");
        pb.redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        pb.redirectOutput(out.toFile());
        pb.redirectError(err.toFile());
        Process p = pb.start();
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError(String.join(" ", command) + " ran past " + timeoutSeconds + " s");
        }
        try {
            return new Run(p.exitValue(), Files.readString(out, StandardCharsets.UTF_8),
                    Files.readString(err, StandardCharsets.UTF_8));
        } finally {
            Files.delete(out);
            Files.delete(err);
        }
    }

    private static Path onPath(String name) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            Path p = Path.of(dir, name);
            if (Files.isExecutable(p)) {
                return p;
            }
        }
        return null;
    }

    private static void copyTree(Path from, Path to) throws IOException {
        try (Stream<Path> files = Files.walk(from)) {
            for (Path f : files.filter(f -> !from.relativize(f).startsWith("target")).toList()) {
                Path target = to.resolve(from.relativize(f).toString());
                if (Files.isDirectory(f)) {
                    Files.createDirectories(target);
                } else {
                    Files.copy(f, target, StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path f : files.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(f);
            }
        }
    }
}
