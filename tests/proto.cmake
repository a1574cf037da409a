# The wire protocol (proto/: framing, parsing, builders, the blocking client
# against a scripted fake daemon) and the vggtune client's logic (argument
# parsing into job documents, rendering, the commands end to end against
# the fake daemon).
vt_add_test(proto SOURCES test_proto.c fake_vggtuned.c LIBS vtproto Threads::Threads
            LABELS unit TIMEOUT 60)
vt_add_test(client SOURCES test_client.c fake_vggtuned.c LIBS vtcli Threads::Threads
            LABELS unit TIMEOUT 60)
