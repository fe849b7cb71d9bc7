"""Class names of the paper replica, in ``label_id`` order.

ActivityNet 1.3 and DESED use their published class names; the UnAV-100 names are event names of
the same kind as the dataset's (sounding objects, instruments, animals, vehicles, sports), not a
verbatim copy of its class list.
"""

from __future__ import annotations

ACTIVITYNET_CLASSES = (
    "Applying sunscreen", "Archery", "Arm wrestling", "Assembling bicycle", "BMX",
    "Baking cookies", "Ballet", "Bathing dog", "Baton twirling", "Beach soccer", "Beer pong",
    "Belly dance", "Blow-drying hair", "Blowing leaves", "Braiding hair", "Breakdancing",
    "Brushing hair", "Brushing teeth", "Building sandcastles", "Bullfighting", "Bungee jumping",
    "Calf roping", "Camel ride", "Canoeing", "Capoeira", "Carving jack-o-lanterns",
    "Changing car wheel", "Cheerleading", "Chopping wood", "Clean and jerk", "Cleaning shoes",
    "Cleaning sink", "Cleaning windows", "Clipping cat claws", "Cricket", "Croquet", "Cumbia",
    "Curling", "Cutting the grass", "Decorating the Christmas tree", "Disc dog", "Discus throw",
    "Dodgeball", "Doing a powerbomb", "Doing crunches", "Doing fencing", "Doing karate",
    "Doing kickboxing", "Doing motocross", "Doing nails", "Doing step aerobics", "Drinking beer",
    "Drinking coffee", "Drum corps", "Elliptical trainer", "Fixing bicycle", "Fixing the roof",
    "Fun sliding down", "Futsal", "Gargling mouthwash", "Getting a haircut", "Getting a piercing",
    "Getting a tattoo", "Grooming dog", "Grooming horse", "Hammer throw", "Hand car wash",
    "Hand washing clothes", "Hanging wallpaper", "Having an ice cream", "High jump",
    "Hitting a pinata", "Hopscotch", "Horseback riding", "Hula hoop", "Hurling", "Ice fishing",
    "Installing carpet", "Ironing clothes", "Javelin throw", "Kayaking", "Kite flying",
    "Kneeling", "Knitting", "Laying tile", "Layup drill in basketball", "Long jump",
    "Longboarding", "Making a cake", "Making a lemonade", "Making a sandwich",
    "Making an omelette", "Mixing drinks", "Mooping floor", "Mowing the lawn", "Paintball",
    "Painting", "Painting fence", "Painting furniture", "Peeling potatoes", "Ping-pong",
    "Plastering", "Plataform diving", "Playing accordion", "Playing badminton",
    "Playing bagpipes", "Playing beach volleyball", "Playing blackjack", "Playing congas",
    "Playing drums", "Playing field hockey", "Playing flauta", "Playing guitarra",
    "Playing harmonica", "Playing ice hockey", "Playing kickball", "Playing lacrosse",
    "Playing piano", "Playing polo", "Playing pool", "Playing racquetball", "Playing rubik cube",
    "Playing saxophone", "Playing squash", "Playing ten pins", "Playing violin",
    "Playing water polo", "Pole vault", "Polishing forniture", "Polishing shoes", "Powerbocking",
    "Preparing pasta", "Preparing salad", "Putting in contact lenses", "Putting on makeup",
    "Putting on shoes", "Rafting", "Raking leaves", "Removing curlers", "Removing ice from car",
    "Riding bumper cars", "River tubing", "Rock climbing", "Rock-paper-scissors",
    "Rollerblading", "Roof shingle removal", "Rope skipping", "Running a marathon", "Sailing",
    "Scuba diving", "Sharpening knives", "Shaving", "Shaving legs", "Shot put",
    "Shoveling snow", "Shuffleboard", "Skateboarding", "Skiing", "Slacklining",
    "Smoking a cigarette", "Smoking hookah", "Snatch", "Snow tubing", "Snowboarding", "Spinning",
    "Spread mulch", "Springboard diving", "Starting a campfire", "Sumo", "Surfing", "Swimming",
    "Swinging at the playground", "Table soccer", "Tai chi", "Tango",
    "Tennis serve with ball bouncing", "Throwing darts", "Trimming branches or hedges",
    "Triple jump", "Tug of war", "Tumbling", "Using parallel bars", "Using the balance beam",
    "Using the monkey bar", "Using the pommel horse", "Using the rowing machine",
    "Using uneven bars", "Vacuuming floor", "Volleyball", "Wakeboarding", "Walking the dog",
    "Washing dishes", "Washing face", "Washing hands", "Waterskiing", "Waxing skis", "Welding",
    "Windsurfing", "Wrapping presents", "Zumba",
)

DESED_CLASSES = (
    "Alarm_bell_ringing", "Blender", "Cat", "Dishes", "Dog", "Electric_shaver_toothbrush",
    "Frying", "Running_water", "Speech", "Vacuum_cleaner",
)

UNAV100_CLASSES = (
    "man speaking", "woman speaking", "child speaking", "people laughing", "people cheering",
    "people clapping", "people whistling", "people shouting", "baby crying", "baby laughter",
    "singing", "choir singing", "people eating", "people coughing", "people sneezing",
    "playing acoustic guitar", "playing electric guitar", "playing bass guitar",
    "playing piano", "playing electronic organ", "playing violin", "playing cello",
    "playing double bass", "playing harp", "playing flute", "playing clarinet",
    "playing saxophone", "playing trumpet", "playing trombone", "playing tuba",
    "playing accordion", "playing harmonica", "playing bagpipes", "playing banjo",
    "playing ukulele", "playing drum kit", "playing snare drum", "playing bass drum",
    "playing cymbal", "playing tambourine", "playing bongo", "playing tabla", "playing marimba",
    "playing vibraphone", "playing sitar", "playing erhu", "playing zither", "playing didgeridoo",
    "dog barking", "dog howling", "cat meowing", "cat purring", "horse neighing", "cow lowing",
    "pig oinking", "sheep bleating", "goat bleating", "chicken clucking", "rooster crowing",
    "duck quacking", "goose honking", "bird chirping", "owl hooting", "crow cawing",
    "lion roaring", "elephant trumpeting", "frog croaking", "car passing by", "car horn",
    "engine starting", "motorcycle revving", "truck passing by", "bus passing by",
    "train moving", "train horning", "ambulance siren", "police car siren", "fire truck siren",
    "airplane flying", "helicopter flying", "motorboat running", "skateboarding", "skiing",
    "bowling", "basketball bouncing", "playing tennis", "playing ping-pong", "chainsawing trees",
    "lawn mowing", "hammering", "drilling", "sawing wood", "typing on keyboard",
    "vacuum cleaner cleaning", "blender running", "frying food", "church bell ringing",
    "clock ticking", "telephone ringing", "fireworks banging",
)
