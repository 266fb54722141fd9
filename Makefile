# UnionFs: `make` builds, `make test` runs every test, `make demo` shows the main job.
DOTNET      ?= dotnet
CONFIG      ?= Release
BIN         := bin/unionfs
ENGINE_BIN  := bin/unionfs-engine
SOURCES     := $(shell find src -name '*.cs' -o -name '*.csproj' -o -name '*.c' | grep -v '/obj/' | grep -v '/bin/')

.PHONY: all build deps publish install test unit-test native-test registry-test test-long demo bench clean

all: publish

deps:
	@scripts/install-deps.sh

build:
	$(DOTNET) build UnionFs.sln -c $(CONFIG) --nologo -v quiet

# The shipped executables, NativeAOT, which start in milliseconds: unionfs (mount, umount, and the FUSE daemon) and
# unionfs-engine beside it (the image and container verbs, which `unionfs VERB` execs). Tests and scripts run
# bin/unionfs.
publish: $(BIN) $(ENGINE_BIN)
$(BIN): $(SOURCES) Directory.Build.props
	$(DOTNET) publish src/UnionFs.Cli -c $(CONFIG) -o obj/publish --nologo -v quiet
	@mkdir -p bin
	cp obj/publish/unionfs $(BIN).tmp && mv -f $(BIN).tmp $(BIN)
$(ENGINE_BIN): $(SOURCES) Directory.Build.props
	$(DOTNET) publish src/UnionFs.EngineCli -c $(CONFIG) -o obj/publish-engine --nologo -v quiet
	@mkdir -p bin
	cp obj/publish-engine/unionfs-engine $(ENGINE_BIN).tmp && mv -f $(ENGINE_BIN).tmp $(ENGINE_BIN)

install: $(BIN) $(ENGINE_BIN)
	install -m 0755 $(BIN) /usr/local/bin/unionfs
	install -m 0755 $(ENGINE_BIN) /usr/local/bin/unionfs-engine

test: deps publish
	$(MAKE) unit-test
	$(MAKE) native-test
	$(MAKE) registry-test

unit-test:
	$(DOTNET) test UnionFs.sln -c $(CONFIG) --nologo -v quiet

native-test: $(BIN) $(ENGINE_BIN)
	$(MAKE) -C native-tests
	UNIONFS=$(CURDIR)/$(BIN) scripts/test-engine.sh
	UNIONFS=$(CURDIR)/$(BIN) native-tests/run.sh

# Push and pull through a real registry (docker-registry on loopback), with skopeo as the other client.
registry-test: $(BIN) $(ENGINE_BIN)
	UNIONFS=$(CURDIR)/$(BIN) timeout -k 10 900 scripts/test-registry.sh

# The full-length fault, fuzz and load runs (issue-sized: 100,000 fsx ops, long kills, 120 s load).
test-long: deps publish
	$(MAKE) unit-test
	$(MAKE) -C native-tests
	LONG=1 UNIONFS=$(CURDIR)/$(BIN) native-tests/run.sh

demo: deps publish
	scripts/demo.sh

bench: deps publish
	scripts/bench/run.sh

clean:
	rm -rf bin obj src/*/bin src/*/obj native-tests/build
