"""What the management commands share for their output."""


class ProgressStream:
    """Lets tqdm draw through a command's self.stdout without the newline OutputWrapper adds
    to each write."""

    def __init__(self, out):
        self.out = out

    def write(self, text):
        self.out.write(text, ending="")

    def flush(self):
        self.out.flush()
