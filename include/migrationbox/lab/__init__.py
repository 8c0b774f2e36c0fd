"""The local lab: an estate's source servers and the target's data plane, on one machine.

``lab.Lab`` builds them (disk folders, databases, HTTP services in one process group);
``lab.endpoints`` is how phases find them without knowing they are in a lab. See the
"local lab" section of DESIGN.md.
"""
